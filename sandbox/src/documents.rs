//! The automation documents the sandbox can run, loaded from the published JSON as AWS serves it.

use serde_json::Value;

/// One runbook parameter as the document declares it.
#[derive(Debug, Clone)]
pub(crate) struct ParamDef {
    pub name: String,
    pub kind: String,
    pub default: Option<Value>,
    pub allowed_pattern: Option<regex::Regex>,
    pub allowed_values: Vec<String>,
    pub description: String,
}

/// One step of `mainSteps`, with the documented defaults filled in.
#[derive(Debug, Clone)]
pub(crate) struct StepDef {
    pub name: String,
    pub action: String,
    pub inputs: Value,
    /// `Abort`, `Continue` or `step:NAME`.
    pub on_failure: String,
    pub is_critical: bool,
    pub is_end: bool,
    pub next_step: Option<String>,
    pub max_attempts: u32,
    pub timeout_seconds: Option<u64>,
    pub outputs: Vec<OutputDef>,
}

#[derive(Debug, Clone)]
pub(crate) struct OutputDef {
    pub name: String,
    pub selector: String,
    pub kind: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Document {
    pub name: String,
    pub version: String,
    pub description: String,
    pub content: String,
    pub parameters: Vec<ParamDef>,
    pub steps: Vec<StepDef>,
    pub outputs: Vec<String>,
}

impl Document {
    fn parse(name: &str, version: &str, content: &str) -> Document {
        let doc: Value = serde_json::from_str(content).expect("bundled document is valid JSON");
        let mut parameters: Vec<ParamDef> = doc["parameters"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(pname, p)| ParamDef {
                        name: pname.clone(),
                        kind: p["type"].as_str().unwrap_or("String").to_owned(),
                        default: p.get("default").cloned(),
                        allowed_pattern: p["allowedPattern"]
                            .as_str()
                            .map(|pat| regex::Regex::new(pat).expect("document pattern compiles")),
                        allowed_values: p["allowedValues"]
                            .as_array()
                            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                            .unwrap_or_default(),
                        description: p["description"].as_str().unwrap_or_default().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        parameters.sort_by(|a, b| a.name.cmp(&b.name));
        let steps = doc["mainSteps"]
            .as_array()
            .expect("document has mainSteps")
            .iter()
            .map(|s| {
                let on_failure = s["onFailure"].as_str().unwrap_or("Abort").to_owned();
                // Documented defaults: isCritical is true unless onFailure is Continue.
                let is_critical = s["isCritical"].as_bool().unwrap_or(on_failure != "Continue");
                StepDef {
                    name: s["name"].as_str().unwrap_or_default().to_owned(),
                    action: s["action"].as_str().unwrap_or_default().to_owned(),
                    inputs: s["inputs"].clone(),
                    on_failure,
                    is_critical,
                    is_end: s["isEnd"].as_bool().unwrap_or(false),
                    next_step: s["nextStep"].as_str().map(str::to_owned),
                    max_attempts: s["maxAttempts"].as_u64().unwrap_or(1) as u32,
                    timeout_seconds: s["timeoutSeconds"].as_u64(),
                    outputs: s["outputs"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|o| OutputDef {
                                    name: o["Name"].as_str().unwrap_or_default().to_owned(),
                                    selector: o["Selector"].as_str().unwrap_or("$").to_owned(),
                                    kind: o["Type"].as_str().unwrap_or("String").to_owned(),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                }
            })
            .collect();
        Document {
            name: name.to_owned(),
            version: version.to_owned(),
            description: doc["description"].as_str().unwrap_or_default().to_owned(),
            content: content.to_owned(),
            parameters,
            steps,
            outputs: doc["outputs"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
        }
    }

    pub(crate) fn step_index(&self, name: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.name == name)
    }

    pub(crate) fn param(&self, name: &str) -> Option<&ParamDef> {
        self.parameters.iter().find(|p| p.name == name)
    }
}

/// The documents the sandbox knows, with the versions AWS publishes them at.
pub(crate) struct Documents {
    docs: Vec<Document>,
}

impl Documents {
    pub(crate) fn load() -> Documents {
        Documents {
            docs: vec![
                Document::parse(
                    "AWSSupport-ConfigureEC2Metadata",
                    "7",
                    include_str!("../documents/AWSSupport-ConfigureEC2Metadata.json"),
                ),
                Document::parse(
                    "AWSConfigRemediation-EnforceEC2InstanceIMDSv2",
                    "4",
                    include_str!("../documents/AWSConfigRemediation-EnforceEC2InstanceIMDSv2.json"),
                ),
            ],
        }
    }

    /// Finds a document by name or by ARN (`arn:aws:ssm:REGION::document/NAME`).
    pub(crate) fn get(&self, name: &str) -> Option<&Document> {
        let short = name.rsplit('/').next().unwrap_or(name);
        self.docs.iter().find(|d| d.name == short)
    }
}
