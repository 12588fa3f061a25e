//! Infobip's own schema of an OMNI advanced send (`OmniAdvancedRequest`, from its OpenAPI
//! document; see `tests/fixtures/schemas/`), to check every body imchannel sends to Infobip.

use std::sync::OnceLock;

use serde_json::Value;

fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/schemas/omni-advanced-request.json"
        );
        let text = std::fs::read_to_string(path).expect("the OMNI schema fixture");
        let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
        jsonschema::draft202012::new(&schema).expect("Infobip's schema compiles")
    })
}

/// Panics, listing what is wrong, unless `body` is a valid `OmniAdvancedRequest`.
pub fn assert_valid_omni(body: &Value) {
    let errors: Vec<String> = validator()
        .iter_errors(body)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "Infobip's OmniAdvancedRequest schema refuses {body}: {errors:?}"
    );
}

/// Whether `body` is a valid `OmniAdvancedRequest`.
pub fn is_valid_omni(body: &Value) -> bool {
    validator().is_valid(body)
}
