//! Operator overrides of the built-in catalog: disable a capability, change
//! an action's price, declare a deprecation.
//!
//! The config module deserializes its `[catalog]` section into
//! [`CatalogOverrides`]; [`super::Catalog::builtin`] checks every entry
//! against the built-ins and refuses to start with one that names nothing or
//! does not parse, so a typo never silently leaves a price unchanged.

use std::collections::BTreeMap;

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::builtins::CapabilitySpec;
use super::model::Deprecation;
use crate::money::Micros;

/// What the operator changed. Keys name capabilities by their plain name
/// (`"utility"`) or their id (`"hub/utility"`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogOverrides {
    /// Capabilities not offered at all.
    pub disabled: Vec<String>,
    /// `"<capability>/<action>"` → price, e.g. `"utility/echo" = "$0.002"`.
    pub prices: BTreeMap<String, String>,
    /// Capability → declared end of life.
    pub deprecations: BTreeMap<String, DeprecationOverride>,
}

/// A deprecation as the operator writes it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeprecationOverride {
    /// RFC 3339, e.g. `"2027-01-01T00:00:00Z"`.
    pub sunset_at: String,
    /// `MAJOR.MINOR.PATCH` of the replacement; must be above the current version.
    #[serde(default)]
    pub successor_version: Option<String>,
}

/// The overrides resolved against the built-ins, keyed by plain names.
#[derive(Debug, Default)]
pub(crate) struct ResolvedOverrides {
    pub(crate) disabled: Vec<&'static str>,
    /// (capability, action) → price.
    pub(crate) prices: BTreeMap<(&'static str, &'static str), Micros>,
    pub(crate) deprecations: BTreeMap<&'static str, Deprecation>,
}

impl ResolvedOverrides {
    pub(crate) fn is_disabled(&self, capability: &str) -> bool {
        self.disabled.contains(&capability)
    }
}

/// Checks every override against `specs`. `Err` names the bad entry.
pub(crate) fn resolve(
    overrides: &CatalogOverrides,
    specs: &[CapabilitySpec],
    hub_namespace: &str,
) -> Result<ResolvedOverrides, String> {
    let find = |name: &str, setting: &str| -> Result<&CapabilitySpec, String> {
        let plain = strip_namespace(name, hub_namespace);
        specs.iter().find(|spec| spec.name == plain).ok_or_else(|| {
            format!("catalog override {setting} names `{name}`, which is not a built-in capability")
        })
    };
    let mut resolved = ResolvedOverrides::default();
    for name in &overrides.disabled {
        let spec = find(name, "`disabled`")?;
        if !resolved.disabled.contains(&spec.name) {
            resolved.disabled.push(spec.name);
        }
    }
    for (key, price) in &overrides.prices {
        let setting = format!("`prices.\"{key}\"`");
        let (capability, action) = key.rsplit_once('/').ok_or_else(|| {
            format!("catalog override {setting}: the key must be \"<capability>/<action>\"")
        })?;
        let spec = find(capability, &setting)?;
        let action = spec
            .actions
            .iter()
            .find(|candidate| candidate.name == action)
            .ok_or_else(|| {
                format!(
                    "catalog override {setting}: `{}` has no action `{action}`",
                    spec.name
                )
            })?;
        let amount =
            Micros::parse(price).map_err(|error| format!("catalog override {setting}: {error}"))?;
        if amount.is_zero() {
            // A zero charge would make every call a free call; the billing
            // path books real charges only.
            return Err(format!(
                "catalog override {setting}: the price must be above zero"
            ));
        }
        resolved.prices.insert((spec.name, action.name), amount);
    }
    for (name, declared) in &overrides.deprecations {
        let setting = format!("`deprecations.\"{name}\"`");
        let spec = find(name, &setting)?;
        let sunset_at =
            OffsetDateTime::parse(declared.sunset_at.trim(), &Rfc3339).map_err(|error| {
                format!(
                    "catalog override {setting}: sunset_at must be an RFC 3339 timestamp ({error})"
                )
            })?;
        let successor_version = match &declared.successor_version {
            None => None,
            Some(text) => {
                let successor = semver::Version::parse(text.trim()).map_err(|error| {
                    format!("catalog override {setting}: successor_version must be MAJOR.MINOR.PATCH ({error})")
                })?;
                if !successor.pre.is_empty() || !successor.build.is_empty() {
                    return Err(format!(
                        "catalog override {setting}: successor_version must be MAJOR.MINOR.PATCH"
                    ));
                }
                let current = semver::Version::parse(spec.version).map_err(|error| {
                    format!("built-in `{}` has a bad version: {error}", spec.name)
                })?;
                if successor <= current {
                    return Err(format!(
                        "catalog override {setting}: successor_version {successor} is not above the current version {current}"
                    ));
                }
                Some(successor.to_string())
            }
        };
        resolved.deprecations.insert(
            spec.name,
            Deprecation {
                sunset_at,
                successor_version,
            },
        );
    }
    Ok(resolved)
}

/// `"hub/utility"` → `"utility"` when `hub` is this Hub's namespace.
fn strip_namespace<'a>(name: &'a str, hub_namespace: &str) -> &'a str {
    let name = name.trim();
    match name.split_once('/') {
        Some((namespace, plain)) if namespace == hub_namespace => plain,
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserializes_with_defaults_and_rejects_unknown_fields() {
        let empty: CatalogOverrides = toml::from_str("").unwrap();
        assert_eq!(empty, CatalogOverrides::default());
        let full: CatalogOverrides = toml::from_str(
            r#"
            disabled = ["data-insight"]
            [prices]
            "utility/echo" = "$0.002"
            [deprecations.utility]
            sunset_at = "2027-01-01T00:00:00Z"
            successor_version = "2.0.0"
            "#,
        )
        .unwrap();
        assert_eq!(full.disabled, vec!["data-insight"]);
        assert_eq!(full.prices["utility/echo"], "$0.002");
        assert_eq!(
            full.deprecations["utility"].successor_version.as_deref(),
            Some("2.0.0")
        );
        assert!(toml::from_str::<CatalogOverrides>("disable = []").is_err());
        assert!(
            toml::from_str::<CatalogOverrides>("[deprecations.utility]\nsunset = \"x\"").is_err()
        );
    }
}
