//! The capability catalog: the registry of what this Hub sells, at what
//! price, to which tier, with which input and output schemas, and the
//! built-in handlers that do the work.
//!
//! The [`Catalog`] is built once at start ([`Catalog::builtin`]) from the
//! built-in specs ([`builtins`]) and the operator's [`CatalogOverrides`]
//! (disable, re-price, deprecate). Building compiles every JSON Schema,
//! checks every example against its own schemas and renders the wire JSON
//! and ETag, so after start a lookup is a scan of a few entries with no
//! allocation and no I/O, and the discovery endpoints serve precomputed JSON.
//! The catalog is immutable afterwards; share it through an `Arc`.
//!
//! Ids are `"<hub_namespace>/<name>"`; callers may also name a built-in by
//! its plain name (`"utility"`), which is what [`Catalog::resolve`] accepts.
//!
//! - [`model`]: the entry types ([`Capability`], [`Action`], …).
//! - [`schema`]: schema compilation and bounded validation.
//! - [`overrides`]: the operator's configuration and its checks.
//! - [`listing`]: the `/v1/capabilities` wire shapes, query parsing, cursors, ETags.
//! - [`builtins`]: `utility`, `document-pipeline`, `data-insight`.

pub mod builtins;
pub mod listing;
pub mod model;
pub mod overrides;
pub mod schema;

use serde_json::{Value, json};

pub use listing::{CACHE_CONTROL, ListQuery, if_none_match_matches};
pub use model::{
    Action, Capability, Deprecation, Example, HandlerError, Resolution, SchemaViolation,
};
pub use overrides::{CatalogOverrides, DeprecationOverride};

use crate::money::Micros;
use crate::protocol::JecpError;
use listing::{ListFilter, capability_json, encode_cursor, etag_of};
use schema::CompiledSchema;

/// Payment methods an action accepts when it declares none (spec 05 §6).
const DEFAULT_PAYMENT_METHODS: [&str; 1] = ["stripe"];

/// The enabled capabilities, sorted by id, with their precomputed wire JSON.
#[derive(Debug)]
pub struct Catalog {
    hub_namespace: String,
    public_url: String,
    capabilities: Vec<Capability>,
    /// `capability_json(.., with_detail = false)`, parallel to `capabilities`.
    summaries: Vec<Value>,
    /// `capability_json(.., with_detail = true)`, parallel to `capabilities`.
    details: Vec<Value>,
    etag: String,
}

impl Catalog {
    /// Replaces one action's handler; `false` when there is no such action.
    /// A test seam (a handler that misbehaves on purpose proves the pipeline
    /// never charges for broken output); production code never calls it.
    #[doc(hidden)]
    pub fn replace_handler(
        &mut self,
        capability_id: &str,
        action_name: &str,
        handler: fn(&Value) -> Result<Value, HandlerError>,
    ) -> bool {
        let action = self
            .capabilities
            .iter_mut()
            .filter(|capability| capability.id == capability_id)
            .flat_map(|capability| capability.actions.iter_mut())
            .find(|action| action.name == action_name);
        match action {
            Some(action) => {
                action.handler = handler;
                true
            }
            None => false,
        }
    }

    /// The built-ins under `hub_namespace`, with `overrides` applied. Compiles
    /// every schema and checks every example. `Err` names what is wrong (a bad
    /// namespace or URL, or the override that names nothing or does not parse).
    pub fn builtin(
        hub_namespace: &str,
        public_url: &str,
        overrides: &CatalogOverrides,
    ) -> Result<Catalog, String> {
        if !is_namespace(hub_namespace) {
            return Err(format!(
                "hub namespace `{hub_namespace}` must match ^[a-z][a-z0-9-]{{2,31}}$ (spec 04 §5)"
            ));
        }
        let public_url = public_url.trim().trim_end_matches('/');
        if !(public_url.starts_with("https://") || public_url.starts_with("http://")) {
            return Err(format!(
                "public URL `{public_url}` must start with https:// or http://"
            ));
        }
        let specs = builtins::all();
        let resolved = overrides::resolve(overrides, &specs, hub_namespace)?;

        let mut capabilities = Vec::with_capacity(specs.len());
        for spec in specs {
            if resolved.is_disabled(spec.name) {
                continue;
            }
            let version = semver::Version::parse(spec.version)
                .map_err(|error| format!("built-in `{}` has a bad version: {error}", spec.name))?;
            let mut actions = Vec::with_capacity(spec.actions.len());
            for action in spec.actions {
                let what = format!("{}/{}", spec.name, action.name);
                let price = match resolved.prices.get(&(spec.name, action.name)) {
                    Some(price) => *price,
                    None => Micros::parse(action.price)
                        .map_err(|error| format!("built-in `{what}` has a bad price: {error}"))?,
                };
                let input_validator =
                    CompiledSchema::compile(&action.input_schema, &format!("{what} input_schema"))?;
                let output_validator = CompiledSchema::compile(
                    &action.output_schema,
                    &format!("{what} output_schema"),
                )?;
                for (index, example) in action.examples.iter().enumerate() {
                    input_validator
                        .validate(&example.input)
                        .map_err(|errors| format!("{what} example {index} input: {errors:?}"))?;
                    output_validator
                        .validate(&example.output)
                        .map_err(|errors| format!("{what} example {index} output: {errors:?}"))?;
                }
                actions.push(Action {
                    name: action.name.to_owned(),
                    description: action.description.to_owned(),
                    price,
                    payment_methods: DEFAULT_PAYMENT_METHODS
                        .iter()
                        .map(|method| (*method).to_owned())
                        .collect(),
                    trust_tier_required: action.tier,
                    rate_limit_rpm: action.rate_limit_rpm,
                    input_schema: action.input_schema,
                    output_schema: action.output_schema,
                    examples: action.examples,
                    side_effects: Vec::new(),
                    input_validator,
                    output_validator,
                    handler: action.handler,
                    heavy: action.heavy,
                });
            }
            capabilities.push(Capability {
                id: format!("{hub_namespace}/{}", spec.name),
                namespace: hub_namespace.to_owned(),
                name: spec.name.to_owned(),
                version,
                description: spec.description.to_owned(),
                tags: spec.tags.iter().map(|tag| (*tag).to_owned()).collect(),
                actions,
                deprecation: resolved.deprecations.get(spec.name).cloned(),
            });
        }
        capabilities.sort_by(|a, b| a.id.cmp(&b.id));
        let summaries: Vec<Value> = capabilities
            .iter()
            .map(|capability| capability_json(capability, public_url, false))
            .collect();
        let details: Vec<Value> = capabilities
            .iter()
            .map(|capability| capability_json(capability, public_url, true))
            .collect();
        let etag = etag_of(&details);
        Ok(Catalog {
            hub_namespace: hub_namespace.to_owned(),
            public_url: public_url.to_owned(),
            capabilities,
            summaries,
            details,
            etag,
        })
    }

    /// What `capability` (`"utility"` or `"<hub_namespace>/utility"`) names.
    /// Allocates only for [`Resolution::OtherNamespace`].
    pub fn resolve(&self, capability: &str) -> Resolution<'_> {
        match self.position(capability) {
            Ok(index) => Resolution::Found(&self.capabilities[index]),
            Err(Some(namespace)) => Resolution::OtherNamespace(namespace.to_owned()),
            Err(None) => Resolution::NotFound,
        }
    }

    /// The index of `capability`, or the foreign namespace it names.
    fn position<'q>(&self, capability: &'q str) -> Result<usize, Option<&'q str>> {
        let name = match capability.split_once('/') {
            Some(("", _)) => return Err(None),
            Some((namespace, _)) if namespace != self.hub_namespace => return Err(Some(namespace)),
            Some((_, name)) => name,
            None => capability,
        };
        self.capabilities
            .iter()
            .position(|candidate| candidate.name == name)
            .ok_or(None)
    }

    /// The enabled capabilities, sorted by id.
    pub fn capabilities(&self) -> &[Capability] {
        &self.capabilities
    }

    /// This Hub's namespace (the part before `/` in every id).
    pub fn hub_namespace(&self) -> &str {
        &self.hub_namespace
    }

    /// Strong ETag (with quotes) over everything the catalog endpoints show;
    /// valid for the list and for every detail.
    pub fn etag(&self) -> &str {
        &self.etag
    }

    /// Whether an `If-None-Match` header value matches [`Catalog::etag`]
    /// (answer 304 then).
    pub fn not_modified(&self, if_none_match: &str) -> bool {
        if_none_match_matches(if_none_match, &self.etag)
    }

    /// The `GET /v1/capabilities` body. Bad parameters → 400 `VALIDATION_FAILED`
    /// with `details.parameter`.
    pub fn list(&self, query: &ListQuery) -> Result<Value, JecpError> {
        let filter = ListFilter::parse(query)?;
        let matching: Vec<usize> = (0..self.capabilities.len())
            .filter(|index| filter.matches(&self.capabilities[*index]))
            .collect();
        let total = matching.len();
        // Ids are sorted, so "after the cursor" is a partition point; the
        // cursor need not name a capability that still exists.
        let start = match &filter.after {
            Some(after) => matching
                .partition_point(|index| self.capabilities[*index].id.as_str() <= after.as_str()),
            None => 0,
        };
        let page_size = if filter.paginated {
            filter.page_size
        } else {
            total
        };
        let end = start.saturating_add(page_size).min(total);
        let page = &matching[start.min(end)..end];
        let has_more = filter.paginated && end < total;
        let next_cursor = match (has_more, page.last()) {
            (true, Some(last)) => Value::from(encode_cursor(&self.capabilities[*last].id)),
            _ => Value::Null,
        };
        let capabilities: Vec<Value> = page
            .iter()
            .map(|index| self.summaries[*index].clone())
            .collect();
        Ok(json!({
            "jecp": "1.0",
            "engine": "jecp-hub",
            "version": "1.0.0",
            "capabilities": capabilities,
            "third_party_capabilities": [],
            "third_party_count": 0,
            "total": total,
            "page_size": if filter.paginated { filter.page_size } else { total },
            "paginated": filter.paginated,
            "next_cursor": next_cursor,
            "has_more": has_more,
        }))
    }

    /// The `GET /v1/capabilities/{id}` body (with examples and `deprecation`),
    /// for a plain name or `ns/name`; `None` when this catalog has no such
    /// capability.
    pub fn detail(&self, id: &str) -> Option<Value> {
        self.position(id)
            .ok()
            .map(|index| self.details[index].clone())
    }

    /// One markdown bullet per capability, for `llms.txt`.
    pub fn llms_lines(&self) -> String {
        let mut out = String::new();
        for capability in &self.capabilities {
            let actions: Vec<String> = capability
                .actions
                .iter()
                .map(|action| {
                    format!(
                        "`{}` ${} ({})",
                        action.name, action.price, action.trust_tier_required
                    )
                })
                .collect();
            out.push_str(&format!(
                "- [{id}]({url}/v1/capabilities/{id}) v{version}: {description} Actions: {actions}.",
                id = capability.id,
                url = self.public_url,
                version = capability.version,
                description = capability.description,
                actions = actions.join(", "),
            ));
            if let Some(deprecation) = &capability.deprecation {
                out.push_str(&format!(
                    " Deprecated; sunset {}.",
                    deprecation.sunset_at_rfc3339()
                ));
            }
            out.push('\n');
        }
        out
    }

    /// `supported_capabilities` for `agent-guide.json`: the enabled ids.
    pub fn guide_entries(&self) -> Value {
        Value::Array(
            self.capabilities
                .iter()
                .map(|capability| Value::from(capability.id.clone()))
                .collect(),
        )
    }
}

/// `^[a-z][a-z0-9-]{2,31}$`.
fn is_namespace(text: &str) -> bool {
    let bytes = text.as_bytes();
    (3..=32).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::builtin("hub", "https://hub.example/", &CatalogOverrides::default()).unwrap()
    }

    #[test]
    fn catalog_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Catalog>();
    }

    #[test]
    fn resolves_plain_and_namespaced_names() {
        let catalog = catalog();
        assert!(
            matches!(catalog.resolve("utility"), Resolution::Found(c) if c.id == "hub/utility")
        );
        assert!(
            matches!(catalog.resolve("hub/utility"), Resolution::Found(c) if c.name == "utility")
        );
        assert_eq!(
            catalog.resolve("acme/utility"),
            Resolution::OtherNamespace("acme".into())
        );
        assert_eq!(catalog.resolve("hub/nothing"), Resolution::NotFound);
        assert_eq!(catalog.resolve("nothing"), Resolution::NotFound);
        assert_eq!(catalog.resolve(""), Resolution::NotFound);
        assert_eq!(catalog.resolve("/utility"), Resolution::NotFound);
        assert_eq!(catalog.resolve("hub/"), Resolution::NotFound);
        assert_eq!(catalog.resolve("hub/utility/echo"), Resolution::NotFound);
    }

    #[test]
    fn capabilities_are_sorted_and_tiers_follow_the_issue() {
        let catalog = catalog();
        let ids: Vec<&str> = catalog
            .capabilities()
            .iter()
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(
            ids,
            ["hub/data-insight", "hub/document-pipeline", "hub/utility"]
        );
        let tier = |id: &str| match catalog.resolve(id) {
            Resolution::Found(capability) => capability.min_tier(),
            other => panic!("{other:?}"),
        };
        assert_eq!(tier("utility"), crate::gate::Tier::Bronze);
        assert_eq!(tier("document-pipeline"), crate::gate::Tier::Silver);
        assert_eq!(tier("data-insight"), crate::gate::Tier::Silver);
    }

    #[test]
    fn rejects_bad_namespace_and_url() {
        assert!(
            Catalog::builtin("H", "https://x", &CatalogOverrides::default())
                .unwrap_err()
                .contains("namespace")
        );
        assert!(
            Catalog::builtin("hub", "ftp://x", &CatalogOverrides::default())
                .unwrap_err()
                .contains("URL")
        );
    }

    #[test]
    fn guide_and_llms_list_the_live_catalog() {
        let catalog = catalog();
        assert_eq!(
            catalog.guide_entries(),
            json!(["hub/data-insight", "hub/document-pipeline", "hub/utility"])
        );
        let lines = catalog.llms_lines();
        assert_eq!(lines.lines().count(), 3);
        assert!(lines.contains("[hub/utility](https://hub.example/v1/capabilities/hub/utility)"));
        assert!(lines.contains("`echo` $0.001 (bronze)"));
        assert!(lines.contains("`forecast` $0.02 (silver)"));
    }
}
