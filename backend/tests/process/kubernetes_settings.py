"""What each container of the sample Kubernetes deployment would be started with.

Reads deploy/kubernetes/imds-console.yaml and prints, as JSON, for every container of the
imds-console Deployment (init containers first): its args, its environment with Secret and
ConfigMap references resolved, the files its ConfigMap volumes put where, the directories its
emptyDir volumes give it, and the user it runs as. packaging.rs starts the binary with them.
"""

import base64
import json
import sys

import yaml


def main(path):
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d

    def secret_value(name, key):
        secret = by_kind["Secret"][name]
        if key in secret.get("stringData", {}):
            return secret["stringData"][key]
        return base64.b64decode(secret["data"][key]).decode()

    def config_value(name, key):
        return by_kind["ConfigMap"][name]["data"][key]

    deployment = by_kind["Deployment"]["imds-console"]
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    user = pod.get("securityContext", {}).get("runAsUser")
    out = []
    for c in pod.get("initContainers", []) + pod["containers"]:
        env = {}
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
                continue
            ref = e["valueFrom"]
            if "secretKeyRef" in ref:
                env[e["name"]] = secret_value(ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"])
            elif "configMapKeyRef" in ref:
                env[e["name"]] = config_value(ref["configMapKeyRef"]["name"], ref["configMapKeyRef"]["key"])
            else:
                sys.exit(f"{c['name']}: env {e['name']} comes from {list(ref)}, which this check cannot resolve")
        files, dirs = {}, []
        for m in c.get("volumeMounts", []):
            volume = volumes[m["name"]]
            if "configMap" in volume:
                data = by_kind["ConfigMap"][volume["configMap"]["name"]]["data"]
                for key, text in data.items():
                    files[m["mountPath"].rstrip("/") + "/" + key] = text
            elif "emptyDir" in volume:
                dirs.append(m["mountPath"])
            else:
                sys.exit(f"{c['name']}: volume {m['name']} is of a kind this check cannot lay out")
        out.append({
            "name": c["name"],
            "command": c.get("command"),
            "args": c.get("args", []),
            "env": env,
            "files": files,
            "dirs": dirs,
            "user": c.get("securityContext", {}).get("runAsUser", user),
        })
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
