//! The small JSONPath subset automation documents use in selectors: `$`, `.Name` and `[index]`.

use serde_json::Value;

/// Selects the value at `path` in `root`, or None when the path leads nowhere.
pub(crate) fn select<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut rest = path.strip_prefix('$')?;
    let mut cur = root;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            cur = cur.get(&after[..end])?;
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let idx: usize = after[..end].parse().ok()?;
            cur = cur.get(idx)?;
            rest = &after[end + 1..];
        } else {
            return None;
        }
    }
    Some(cur)
}

/// A selected value as the string SSM compares and reports (`2`, `required`, JSON for objects).
pub(crate) fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selects_nested_fields_and_indexes() {
        let v =
            json!({"Reservations": [{"Instances": [{"MetadataOptions": {"HttpPutResponseHopLimit": 2}}]}]});
        let got = select(
            &v,
            "$.Reservations[0].Instances[0].MetadataOptions.HttpPutResponseHopLimit",
        );
        assert_eq!(got.map(as_text).as_deref(), Some("2"));
        assert!(select(&v, "$.Reservations[1]").is_none());
        assert_eq!(select(&v, "$"), Some(&v));
    }
}
