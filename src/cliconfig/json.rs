//! Turns a JSON-syntax CLI config into HCL 1 native syntax with the same
//! meaning, so that it can be carried into the one generated file.
//!
//! Terraform reads any CLI config file whose first non-space character is
//! `{` as JSON, and `terraform login` stores tokens in
//! `~/.terraform.d/credentials.tfrc.json`, so JSON files are common.
//!
//! HCL 1 reads JSON into the same tree as native syntax after "flattening":
//! an object whose members are all objects becomes labels
//! (`{"credentials": {"app.terraform.io": {"token": "..."}}}` is
//! `credentials "app.terraform.io" { token = "..." }`), and a list of objects
//! becomes one block per object. Writing that tree out as native syntax, with
//! every object as a block (Terraform's `provider_installation` decoder
//! insists on blocks), keeps its meaning. Members keep their order and repeated
//! keys are kept, as HCL 1 keeps them: Terraform's own example repeats
//! `"filesystem_mirror"` inside `provider_installation`.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::hcl1;

/// Why a JSON CLI config has no native-syntax translation; `at` names the
/// member, as dotted keys.
#[derive(Debug, thiserror::Error)]
pub(super) enum TranslationError {
    #[error("{0}")]
    NotJson(serde_json::Error),
    #[error("the top level of a JSON CLI config must be an object")]
    NotAnObject,
    #[error("at {at}: null has no HCL 1 form")]
    Null { at: String },
    #[error("at {at}: {source}")]
    Unquotable {
        at: String,
        source: hcl1::Unquotable,
    },
}

/// Translates a JSON CLI config into native syntax; the error says what is
/// wrong and where.
pub(super) fn to_native(src: &str) -> Result<String, TranslationError> {
    let value: Json = serde_json::from_str(src).map_err(TranslationError::NotJson)?;
    let Json::Object(members) = value else {
        return Err(TranslationError::NotAnObject);
    };
    let mut out = String::new();
    write_body(&mut out, &members, 0, "")?;
    Ok(out)
}

/// A JSON value that keeps object members in order, repeated keys included
/// (`serde_json::Value` keeps only the last of a repeated key).
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.to_string()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.to_string()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
        Ok(Json::Number(v.to_string()))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut elements = Vec::new();
        while let Some(element) = seq.next_element()? {
            elements.push(element);
        }
        Ok(Json::Array(elements))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry()? {
            members.push(member);
        }
        Ok(Json::Object(members))
    }
}

/// One item of HCL 1's flattened tree: its keys and its value.
type Flat<'a> = (Vec<&'a str>, &'a Json);

/// HCL 1's flattening of one JSON member, in order (see the module docs).
fn flatten<'a>(keys: Vec<&'a str>, value: &'a Json, out: &mut Vec<Flat<'a>>) {
    match value {
        Json::Object(members)
            if !members.is_empty() && members.iter().all(|(_, v)| is_object(v)) =>
        {
            for (key, member) in members {
                let mut longer = keys.clone();
                longer.push(key);
                flatten(longer, member, out);
            }
        }
        Json::Array(elements) if !elements.is_empty() && elements.iter().all(is_object) => {
            for element in elements {
                flatten(keys.clone(), element, out);
            }
        }
        _ => out.push((keys, value)),
    }
}

fn is_object(value: &Json) -> bool {
    matches!(value, Json::Object(_))
}

/// Writes members at `depth`; `path` names where they are, for errors.
fn write_body(
    out: &mut String,
    members: &[(String, Json)],
    depth: usize,
    path: &str,
) -> Result<(), TranslationError> {
    let mut items = Vec::new();
    for (key, value) in members {
        flatten(vec![key], value, &mut items);
    }
    let mut previous_was_block = false;
    for (index, (keys, value)) in items.iter().enumerate() {
        let is_block = is_object(value);
        if depth == 0 && index > 0 && (is_block || previous_was_block) {
            out.push('\n');
        }
        write_item(out, keys, value, depth, path)?;
        previous_was_block = is_block;
    }
    Ok(())
}

/// `keys { ... }` for an object, `key = value` for anything else.
fn write_item(
    out: &mut String,
    keys: &[&str],
    value: &Json,
    depth: usize,
    path: &str,
) -> Result<(), TranslationError> {
    let context = match path {
        "" => keys.join("."),
        _ => format!("{path}.{}", keys.join(".")),
    };
    let in_context = |source| TranslationError::Unquotable {
        at: context.clone(),
        source,
    };
    out.push_str(&"  ".repeat(depth));
    out.push_str(&key(keys[0]).map_err(in_context)?);
    if let Json::Object(members) = value {
        for label in &keys[1..] {
            out.push(' ');
            out.push_str(&hcl1::quote(label).map_err(in_context)?);
        }
        out.push(' ');
        write_object(out, members, depth, &context)?;
    } else {
        // Flattening only adds labels in front of objects, so a non-object
        // value always has exactly one key.
        debug_assert_eq!(keys.len(), 1);
        out.push_str(" = ");
        write_value(out, value, depth, &context)?;
    }
    out.push('\n');
    Ok(())
}

fn write_object(
    out: &mut String,
    members: &[(String, Json)],
    depth: usize,
    path: &str,
) -> Result<(), TranslationError> {
    if members.is_empty() {
        out.push_str("{}");
        return Ok(());
    }
    out.push_str("{\n");
    write_body(out, members, depth + 1, path)?;
    out.push_str(&"  ".repeat(depth));
    out.push('}');
    Ok(())
}

fn write_value(
    out: &mut String,
    value: &Json,
    depth: usize,
    path: &str,
) -> Result<(), TranslationError> {
    let at = || path.to_owned();
    match value {
        Json::Null => return Err(TranslationError::Null { at: at() }),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => out.push_str(n),
        Json::String(s) => out.push_str(
            &hcl1::quote(s).map_err(|source| TranslationError::Unquotable { at: at(), source })?,
        ),
        Json::Array(elements) => {
            out.push('[');
            for (index, element) in elements.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                write_value(out, element, depth, path)?;
            }
            out.push(']');
        }
        Json::Object(members) => write_object(out, members, depth, path)?,
    }
    Ok(())
}

/// A key as a bare name where that reads the same, quoted otherwise.
fn key(name: &str) -> Result<String, hcl1::Unquotable> {
    if hcl1::is_plain_identifier(name) {
        Ok(name.to_owned())
    } else {
        hcl1::quote(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_file_from_terraform_login() {
        let src = r#"{
  "credentials": {
    "app.terraform.io": {
      "token": "abc.atlasv1.xyz"
    },
    "tfe.example.com": {
      "token": "t2"
    }
  }
}"#;
        assert_eq!(
            to_native(src).unwrap(),
            "credentials \"app.terraform.io\" {\n  token = \"abc.atlasv1.xyz\"\n}\n\n\
             credentials \"tfe.example.com\" {\n  token = \"t2\"\n}\n"
        );
    }

    #[test]
    fn provider_installation_keeps_repeated_methods_in_order() {
        // The shape of Terraform's own testdata/provider-installation.json.
        let src = r#"{
  "provider_installation": {
    "dev_overrides": {"hashicorp/boop": "/tmp/boop"},
    "filesystem_mirror": [{"path": "/tmp/example1", "include": ["example.com/*/*"]}],
    "network_mirror": [{"url": "https://tf-Mirror.example.com/"}],
    "filesystem_mirror": [{"path": "/tmp/example2"}],
    "direct": [{"exclude": ["example.com/*/*"]}]
  },
  "disable_checkpoint": true,
  "plugin_cache_dir": "$HOME/.terraform.d/plugin-cache"
}"#;
        let native = to_native(src).unwrap();
        assert_eq!(
            native,
            r#"provider_installation {
  dev_overrides {
    "hashicorp/boop" = "/tmp/boop"
  }
  filesystem_mirror {
    path = "/tmp/example1"
    include = ["example.com/*/*"]
  }
  network_mirror {
    url = "https://tf-Mirror.example.com/"
  }
  filesystem_mirror {
    path = "/tmp/example2"
  }
  direct {
    exclude = ["example.com/*/*"]
  }
}

disable_checkpoint = true
plugin_cache_dir = "$HOME/.terraform.d/plugin-cache"
"#
        );
        hcl1::parse(&native).unwrap();
    }

    #[test]
    fn nested_objects_of_objects_become_labels() {
        // HCL 1 reads this JSON as `host "example.com" "services" { ... }`;
        // terraform 1.11 was checked to treat both forms the same.
        let src = r#"{"host": {"example.com": {"services": {"providers.v1": "https://x/"}}}}"#;
        assert_eq!(
            to_native(src).unwrap(),
            "host \"example.com\" \"services\" {\n  \"providers.v1\" = \"https://x/\"\n}\n"
        );
    }

    #[test]
    fn refuses_what_native_syntax_cannot_say() {
        assert_eq!(
            to_native(r#"{"credentials": {"h": {"token": null}}}"#)
                .unwrap_err()
                .to_string(),
            "at credentials.h.token: null has no HCL 1 form"
        );
        assert_eq!(
            to_native(r#"{"a": "${x\"}"}"#).unwrap_err().to_string(),
            "at a: a string containing `${` cannot be written in HCL 1 syntax with the same value"
        );
        assert_eq!(
            to_native("[1]").unwrap_err().to_string(),
            "the top level of a JSON CLI config must be an object"
        );
        assert!(to_native("{\"a\": }")
            .unwrap_err()
            .to_string()
            .contains("line 1 column"));
    }
}
