//! `document-pipeline` (silver): `generate-invoice` and `generate-receipt`.
//!
//! Line items (quantity, unit price, tax rate) become a PDF, returned base64
//! in `output.pdf`, and `output.metadata` with the document number and the
//! subtotal, tax and total. All arithmetic is on integers: quantities in
//! thousandths, unit prices in millionths of the currency unit, tax rates in
//! ten-thousandths of a percent, amounts in the currency's minor units. Each
//! line is rounded half-up to minor units; tax is computed per rate over the
//! sum of that rate's lines, then rounded once (how most tax regimes want it).
//!
//! Deterministic: the document number is the caller's or a hash of the input,
//! and dates come only from the input (no clock reads).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::digest::{SHA256, digest};
use serde_json::{Value, json};
use time::Date;
use time::macros::format_description;

use super::decimal::{div_round_half_up, format_fixed, format_trimmed, parse_fixed};
use super::pdf::{Document, MARGIN, PAGE_WIDTH, Weight, fit, wrap};
use super::{ActionSpec, CapabilitySpec, example};
use crate::catalog::model::HandlerError;
use crate::catalog::schema::MAX_BYTES_KEYWORD;
use crate::gate::Tier;
use crate::protocol::canonical::canonical_json;

pub const LINE_ITEMS_MAX: usize = 200;
const QUANTITY_SCALE: u32 = 3;
const QUANTITY_WHOLE_DIGITS_MAX: usize = 7;
const PRICE_SCALE: u32 = 6;
const PRICE_WHOLE_DIGITS_MAX: usize = 9;
/// Tax rates are percentages with up to four decimals (`8.25`, `19`, `7.6875`).
const RATE_SCALE: u32 = 4;
/// 100% in rate units.
const RATE_HUNDRED_PERCENT: u128 = 100 * 10u128.pow(RATE_SCALE);
/// Totals stay exactly representable as JSON numbers in every client (2^53 - 1).
const MINOR_UNITS_MAX: u128 = (1 << 53) - 1;
const INPUT_BYTES_MAX: u64 = 256 * 1024;

/// ISO 4217 currencies without minor units.
const ZERO_DECIMAL_CURRENCIES: [&str; 17] = [
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
    "VUV", "XAF", "XOF", "XPF",
];
/// ISO 4217 currencies with three decimals.
const THREE_DECIMAL_CURRENCIES: [&str; 7] = ["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Invoice,
    Receipt,
}

impl Kind {
    fn title(self) -> &'static str {
        match self {
            Kind::Invoice => "INVOICE",
            Kind::Receipt => "RECEIPT",
        }
    }

    fn number_field(self) -> &'static str {
        match self {
            Kind::Invoice => "invoice_number",
            Kind::Receipt => "receipt_number",
        }
    }

    fn number_prefix(self) -> &'static str {
        match self {
            Kind::Invoice => "INV-",
            Kind::Receipt => "RCT-",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Invoice => "Invoice",
            Kind::Receipt => "Receipt",
        }
    }
}

pub(super) fn capability() -> CapabilitySpec {
    CapabilitySpec {
        name: "document-pipeline",
        version: "1.0.0",
        description: "Business documents as PDF: invoices and receipts from line items, with exact totals.",
        tags: &["documents", "pdf", "invoice", "receipt", "billing"],
        actions: vec![invoice_action(), receipt_action()],
    }
}

fn invoice_action() -> ActionSpec {
    ActionSpec {
        name: "generate-invoice",
        description: "Line items, quantities, unit prices, tax rates, currency and due date to a PDF invoice (base64) with exact subtotal, tax and total.",
        price: "$0.005",
        tier: Tier::Silver,
        rate_limit_rpm: Some(120),
        input_schema: input_schema(Kind::Invoice),
        output_schema: output_schema(Kind::Invoice),
        examples: vec![example(
            json!({
                "client_name": "ACME Corp",
                "client_address": "1 Main St\nSpringfield",
                "seller_name": "Example Studio",
                "currency": "USD",
                "issue_date": "2026-01-15",
                "due_date": "2026-02-14",
                "invoice_number": "INV-2026-001",
                "items": [
                    {"description": "Design work", "quantity": 10, "unit_price": "45.00", "tax_rate": 10},
                    {"description": "Hosting", "quantity": 1, "unit_price": 0.1},
                    {"description": "Domain", "quantity": 1, "unit_price": 0.2}
                ]
            }),
            json!({
                "pdf": "JVBERi0xLjcK",
                "content_type": "application/pdf",
                "filename": "invoice-INV-2026-001.pdf",
                "size_bytes": 9,
                "metadata": {
                    "invoice_number": "INV-2026-001",
                    "currency": "USD",
                    "issue_date": "2026-01-15",
                    "due_date": "2026-02-14",
                    "line_items": 3,
                    "pages": 1,
                    "subtotal": "450.30",
                    "tax": "45.00",
                    "total": "495.30",
                    "subtotal_minor": 45030,
                    "tax_minor": 4500,
                    "total_minor": 49530,
                    "minor_unit_digits": 2,
                    "tax_breakdown": [
                        {"rate_percent": "0", "taxable": "0.30", "tax": "0.00"},
                        {"rate_percent": "10", "taxable": "450.00", "tax": "45.00"}
                    ]
                }
            }),
        )],
        handler: generate_invoice,
        heavy: true,
    }
}

fn receipt_action() -> ActionSpec {
    ActionSpec {
        name: "generate-receipt",
        description: "Line items, quantities, unit prices, tax rates and currency to a PDF receipt (base64) with exact subtotal, tax and total.",
        price: "$0.003",
        tier: Tier::Silver,
        rate_limit_rpm: Some(120),
        input_schema: input_schema(Kind::Receipt),
        output_schema: output_schema(Kind::Receipt),
        examples: vec![example(
            json!({
                "client_name": "Jane Doe",
                "currency": "EUR",
                "issue_date": "2026-03-01",
                "payment_method": "Card",
                "receipt_number": "R-77",
                "items": [{"description": "Coffee beans 1 kg", "quantity": 2, "unit_price": "18.90", "tax_rate": "7"}]
            }),
            json!({
                "pdf": "JVBERi0xLjcK",
                "content_type": "application/pdf",
                "filename": "receipt-R-77.pdf",
                "size_bytes": 9,
                "metadata": {
                    "receipt_number": "R-77",
                    "currency": "EUR",
                    "issue_date": "2026-03-01",
                    "due_date": null,
                    "line_items": 1,
                    "pages": 1,
                    "subtotal": "37.80",
                    "tax": "2.65",
                    "total": "40.45",
                    "subtotal_minor": 3780,
                    "tax_minor": 265,
                    "total_minor": 4045,
                    "minor_unit_digits": 2,
                    "tax_breakdown": [{"rate_percent": "7", "taxable": "37.80", "tax": "2.65"}]
                }
            }),
        )],
        handler: generate_receipt,
        heavy: true,
    }
}

fn decimal_schema(pattern: &str, maximum: u64, description: &str) -> Value {
    json!({
        "description": description,
        "oneOf": [
            {"type": "number", "minimum": 0, "maximum": maximum},
            {"type": "string", "pattern": pattern}
        ]
    })
}

fn input_schema(kind: Kind) -> Value {
    let date = json!({"type": "string", "format": "date", "description": "YYYY-MM-DD"});
    let mut properties = json!({
        "client_name": {"type": "string", "minLength": 1, "maxLength": 200},
        "client_address": {"type": "string", "maxLength": 500},
        "seller_name": {"type": "string", "maxLength": 200},
        "seller_address": {"type": "string", "maxLength": 500},
        "currency": {"type": "string", "pattern": "^[A-Z]{3,5}$", "default": "USD",
                     "description": "ISO 4217 code (or a crypto code such as USDC); sets the minor-unit digits."},
        "issue_date": date.clone(),
        "notes": {"type": "string", "maxLength": 2000},
        "items": {
            "type": "array", "minItems": 1, "maxItems": LINE_ITEMS_MAX,
            "items": {
                "type": "object",
                "additionalProperties": false,
                "required": ["description", "quantity", "unit_price"],
                "properties": {
                    "description": {"type": "string", "minLength": 1, "maxLength": 300},
                    "quantity": decimal_schema("^[0-9]{1,7}(\\.[0-9]{1,3})?$", 9_999_999,
                        "Up to 7 whole digits and 3 decimals."),
                    "unit_price": decimal_schema("^\\$?[0-9]{1,9}(\\.[0-9]{1,6})?$", 999_999_999,
                        "Price per unit in the document currency; up to 6 decimals. Strings keep exactness."),
                    "tax_rate": decimal_schema("^[0-9]{1,3}(\\.[0-9]{1,4})?$", 100,
                        "Percent, 0 to 100, up to 4 decimals. Default 0.")
                }
            }
        }
    });
    let number_pattern = json!({"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._/-]{0,39}$",
        "description": "Your document number; derived from a hash of the input when absent."});
    let mut required = vec!["client_name", "items"];
    if let Some(map) = properties.as_object_mut() {
        map.insert(kind.number_field().to_owned(), number_pattern);
        match kind {
            Kind::Invoice => {
                map.insert("due_date".to_owned(), date);
                required.push("due_date");
            }
            Kind::Receipt => {
                map.insert(
                    "payment_method".to_owned(),
                    json!({"type": "string", "maxLength": 100}),
                );
            }
        }
    }
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": required,
        "properties": properties,
        MAX_BYTES_KEYWORD: INPUT_BYTES_MAX,
    })
}

fn output_schema(kind: Kind) -> Value {
    let amount = json!({"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$"});
    let minor = json!({"type": "integer", "minimum": 0});
    let nullable_date = json!({"type": ["string", "null"], "format": "date"});
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["pdf", "content_type", "filename", "size_bytes", "metadata"],
        "properties": {
            "pdf": {"type": "string", "contentEncoding": "base64", "contentMediaType": "application/pdf",
                    "pattern": "^JVBERi"},
            "content_type": {"const": "application/pdf"},
            "filename": {"type": "string"},
            "size_bytes": {"type": "integer", "minimum": 1},
            "metadata": {
                "type": "object",
                "additionalProperties": false,
                "required": [kind.number_field(), "currency", "issue_date", "due_date", "line_items", "pages",
                             "subtotal", "tax", "total", "subtotal_minor", "tax_minor", "total_minor",
                             "minor_unit_digits", "tax_breakdown"],
                "properties": {
                    kind.number_field(): {"type": "string"},
                    "currency": {"type": "string"},
                    "issue_date": nullable_date.clone(),
                    "due_date": nullable_date,
                    "line_items": {"type": "integer", "minimum": 1, "maximum": LINE_ITEMS_MAX},
                    "pages": {"type": "integer", "minimum": 1},
                    "subtotal": amount.clone(),
                    "tax": amount.clone(),
                    "total": amount.clone(),
                    "subtotal_minor": minor.clone(),
                    "tax_minor": minor.clone(),
                    "total_minor": minor,
                    "minor_unit_digits": {"type": "integer", "minimum": 0, "maximum": 3},
                    "tax_breakdown": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": false,
                            "required": ["rate_percent", "taxable", "tax"],
                            "properties": {"rate_percent": {"type": "string"}, "taxable": amount.clone(), "tax": amount}
                        }
                    }
                }
            }
        }
    })
}

pub(crate) fn generate_invoice(input: &Value) -> Result<Value, HandlerError> {
    generate(input, Kind::Invoice)
}

pub(crate) fn generate_receipt(input: &Value) -> Result<Value, HandlerError> {
    generate(input, Kind::Receipt)
}

/// One priced line, all amounts integer.
#[derive(Debug)]
struct Line {
    description: String,
    quantity_milli: u128,
    unit_price_micro: u128,
    tax_rate: u128,
    net_minor: u128,
}

/// Everything the PDF and the metadata show.
#[derive(Debug)]
struct Computed {
    number: String,
    currency: String,
    digits: u32,
    issue_date: Option<String>,
    due_date: Option<String>,
    lines: Vec<Line>,
    /// Rate → (taxable net, tax), ascending by rate.
    tax_groups: BTreeMap<u128, (u128, u128)>,
    subtotal: u128,
    tax: u128,
    total: u128,
}

fn generate(input: &Value, kind: Kind) -> Result<Value, HandlerError> {
    let computed = compute(input, kind)?;
    let (pdf, page_count) = render(input, kind, &computed);
    let mut metadata = serde_json::Map::new();
    metadata.insert(kind.number_field().to_owned(), json!(computed.number));
    metadata.insert("currency".to_owned(), json!(computed.currency));
    metadata.insert("issue_date".to_owned(), json!(computed.issue_date));
    metadata.insert("due_date".to_owned(), json!(computed.due_date));
    metadata.insert("line_items".to_owned(), json!(computed.lines.len()));
    metadata.insert("pages".to_owned(), json!(page_count));
    metadata.insert(
        "subtotal".to_owned(),
        json!(money(computed.subtotal, computed.digits)),
    );
    metadata.insert(
        "tax".to_owned(),
        json!(money(computed.tax, computed.digits)),
    );
    metadata.insert(
        "total".to_owned(),
        json!(money(computed.total, computed.digits)),
    );
    metadata.insert("subtotal_minor".to_owned(), json!(computed.subtotal as u64));
    metadata.insert("tax_minor".to_owned(), json!(computed.tax as u64));
    metadata.insert("total_minor".to_owned(), json!(computed.total as u64));
    metadata.insert("minor_unit_digits".to_owned(), json!(computed.digits));
    let breakdown: Vec<Value> = computed
        .tax_groups
        .iter()
        .map(|(rate, (taxable, tax))| {
            json!({
                "rate_percent": format_trimmed(*rate, RATE_SCALE),
                "taxable": money(*taxable, computed.digits),
                "tax": money(*tax, computed.digits),
            })
        })
        .collect();
    metadata.insert("tax_breakdown".to_owned(), Value::Array(breakdown));
    Ok(json!({
        "pdf": BASE64.encode(&pdf),
        "content_type": "application/pdf",
        "filename": format!("{}-{}.pdf", kind.label().to_ascii_lowercase(), file_safe(&computed.number)),
        "size_bytes": pdf.len(),
        "metadata": metadata,
    }))
}

fn compute(input: &Value, kind: Kind) -> Result<Computed, HandlerError> {
    let object = input
        .as_object()
        .ok_or_else(|| invalid("the input must be an object"))?;
    optional_str(input, "client_name")?
        .filter(|name| !name.is_empty())
        .ok_or_else(|| invalid("`client_name` is required"))?;
    let currency = optional_str(input, "currency")?.unwrap_or("USD").to_owned();
    if !(3..=5).contains(&currency.len()) || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(invalid(
            "`currency` must be 3 to 5 capital letters, like USD",
        ));
    }
    let digits = minor_unit_digits(&currency);

    let issue_date = optional_date(input, "issue_date")?;
    let due_date = optional_date(input, "due_date")?;
    if kind == Kind::Invoice && due_date.is_none() {
        return Err(invalid("`due_date` is required"));
    }
    if let (Some(issued), Some(due)) = (issue_date, due_date)
        && due < issued
    {
        return Err(invalid("`due_date` is before `issue_date`"));
    }

    let items = object
        .get("items")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("`items` must be an array"))?;
    if items.is_empty() || items.len() > LINE_ITEMS_MAX {
        return Err(invalid(&format!(
            "`items` must have 1 to {LINE_ITEMS_MAX} entries"
        )));
    }
    // minor units per currency unit, and the divisor taking
    // quantity_milli × price_micro down to minor units.
    let divisor = 10u128.pow(QUANTITY_SCALE + PRICE_SCALE - digits);
    let mut lines = Vec::with_capacity(items.len());
    let mut tax_groups: BTreeMap<u128, (u128, u128)> = BTreeMap::new();
    for (index, item) in items.iter().enumerate() {
        let field = |name: &str| {
            item.get(name)
                .ok_or_else(|| invalid(&format!("`items[{index}].{name}` is required")))
        };
        let description = field("description")?
            .as_str()
            .ok_or_else(|| invalid(&format!("`items[{index}].description` must be a string")))?
            .to_owned();
        let quantity_milli = parse_fixed(
            field("quantity")?,
            QUANTITY_SCALE,
            QUANTITY_WHOLE_DIGITS_MAX,
            false,
        )
        .map_err(|reason| invalid(&format!("`items[{index}].quantity` {reason}")))?;
        if quantity_milli == 0 {
            return Err(invalid(&format!(
                "`items[{index}].quantity` must be greater than 0"
            )));
        }
        let unit_price_micro = parse_fixed(
            field("unit_price")?,
            PRICE_SCALE,
            PRICE_WHOLE_DIGITS_MAX,
            true,
        )
        .map_err(|reason| invalid(&format!("`items[{index}].unit_price` {reason}")))?;
        let tax_rate = match item.get("tax_rate") {
            None | Some(Value::Null) => 0,
            Some(value) => parse_fixed(value, RATE_SCALE, 3, false)
                .map_err(|reason| invalid(&format!("`items[{index}].tax_rate` {reason}")))?,
        };
        if tax_rate > RATE_HUNDRED_PERCENT {
            return Err(invalid(&format!(
                "`items[{index}].tax_rate` must be at most 100 (percent)"
            )));
        }
        // At most 10^10 × 10^15 = 10^25 < 2^128: no overflow possible.
        let net_minor = div_round_half_up(quantity_milli * unit_price_micro, divisor);
        let group = tax_groups.entry(tax_rate).or_insert((0, 0));
        group.0 += net_minor;
        lines.push(Line {
            description,
            quantity_milli,
            unit_price_micro,
            tax_rate,
            net_minor,
        });
    }
    for (rate, (taxable, tax)) in tax_groups.iter_mut() {
        *tax = div_round_half_up(*taxable * *rate, RATE_HUNDRED_PERCENT);
    }
    let subtotal: u128 = lines.iter().map(|line| line.net_minor).sum();
    let tax: u128 = tax_groups.values().map(|(_, tax)| tax).sum();
    let total = subtotal + tax;
    if total > MINOR_UNITS_MAX {
        return Err(invalid(
            "the document total is too large to represent exactly",
        ));
    }

    let number = match optional_str(input, kind.number_field())? {
        Some(number) => {
            let valid = (1..=40).contains(&number.len())
                && number
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b));
            if !valid {
                return Err(invalid(&format!(
                    "`{}` must be 1-40 letters, digits, . _ / -",
                    kind.number_field()
                )));
            }
            number.to_owned()
        }
        None => {
            // Same input, same number: a hash of the canonical input.
            let sum = digest(&SHA256, &canonical_json(input));
            format!(
                "{}{}",
                kind.number_prefix(),
                hex::encode_upper(&sum.as_ref()[..6])
            )
        }
    };
    Ok(Computed {
        number,
        currency,
        digits,
        issue_date: issue_date.map(date_text),
        due_date: due_date.map(date_text),
        lines,
        tax_groups,
        subtotal,
        tax,
        total,
    })
}

fn minor_unit_digits(currency: &str) -> u32 {
    if ZERO_DECIMAL_CURRENCIES.contains(&currency) {
        0
    } else if THREE_DECIMAL_CURRENCIES.contains(&currency) {
        3
    } else {
        2
    }
}

fn money(minor: u128, digits: u32) -> String {
    format_fixed(minor, digits, false)
}

fn optional_str<'a>(input: &'a Value, name: &str) -> Result<Option<&'a str>, HandlerError> {
    match input.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(invalid(&format!("`{name}` must be a string"))),
    }
}

fn optional_date(input: &Value, name: &str) -> Result<Option<Date>, HandlerError> {
    let Some(text) = optional_str(input, name)? else {
        return Ok(None);
    };
    Date::parse(text, format_description!("[year]-[month]-[day]"))
        .map(Some)
        .map_err(|_| invalid(&format!("`{name}` must be a real date as YYYY-MM-DD")))
}

fn date_text(date: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

fn file_safe(number: &str) -> String {
    number
        .chars()
        .map(|c| if c == '/' { '-' } else { c })
        .collect()
}

fn invalid(message: &str) -> HandlerError {
    HandlerError::InvalidInput(message.to_owned())
}

// Table columns (right edges for numbers).
const COLUMN_DESCRIPTION_X: f32 = MARGIN;
const COLUMN_DESCRIPTION_WIDTH: f32 = 230.0;
const COLUMN_QUANTITY_RIGHT: f32 = 340.0;
const COLUMN_PRICE_RIGHT: f32 = 420.0;
const COLUMN_TAX_RIGHT: f32 = 470.0;
const COLUMN_AMOUNT_RIGHT: f32 = PAGE_WIDTH - MARGIN;
const BODY_SIZE: f32 = 10.0;
const LINE_HEIGHT: f32 = 13.0;

/// The PDF bytes and their page count.
fn render(input: &Value, kind: Kind, computed: &Computed) -> (Vec<u8>, usize) {
    let title = format!("{} {}", kind.label(), computed.number);
    let mut doc = Document::new(&title);
    let text_width = PAGE_WIDTH - 2.0 * MARGIN;
    let string = |name: &str| input.get(name).and_then(Value::as_str).unwrap_or("");

    // Header: title left, document facts right.
    let top = doc.y;
    doc.text(MARGIN, top - 14.0, kind.title(), Weight::Bold, 22.0);
    let mut facts = vec![(format!("{} number:", kind.label()), computed.number.clone())];
    if let Some(date) = &computed.issue_date {
        facts.push(("Date:".to_owned(), date.clone()));
    }
    if let Some(date) = &computed.due_date {
        facts.push(("Due date:".to_owned(), date.clone()));
    }
    if kind == Kind::Receipt && !string("payment_method").is_empty() {
        facts.push((
            "Paid by:".to_owned(),
            fit(string("payment_method"), Weight::Regular, BODY_SIZE, 140.0),
        ));
    }
    facts.push(("Currency:".to_owned(), computed.currency.clone()));
    let mut y = top;
    for (label, value) in &facts {
        doc.text_right(
            PAGE_WIDTH - MARGIN - 150.0,
            y,
            label,
            Weight::Bold,
            BODY_SIZE,
        );
        doc.text_right(PAGE_WIDTH - MARGIN, y, value, Weight::Regular, BODY_SIZE);
        y -= LINE_HEIGHT;
    }
    doc.y = y.min(top - 40.0) - 10.0;

    // Parties.
    let seller = string("seller_name");
    if !seller.is_empty() {
        block(
            &mut doc,
            "From",
            seller,
            string("seller_address"),
            text_width,
        );
    }
    let client_label = if kind == Kind::Invoice {
        "Bill to"
    } else {
        "Received from"
    };
    block(
        &mut doc,
        client_label,
        string("client_name"),
        string("client_address"),
        text_width,
    );
    doc.y -= 6.0;

    // Items.
    table_header(&mut doc);
    for line in &computed.lines {
        let description = wrap(
            &line.description,
            Weight::Regular,
            BODY_SIZE,
            COLUMN_DESCRIPTION_WIDTH,
            3,
        );
        let height = LINE_HEIGHT * description.len() as f32 + 3.0;
        if doc.ensure_room(height) {
            table_header(&mut doc);
        }
        let y = doc.y;
        for (offset, text) in description.iter().enumerate() {
            doc.text(
                COLUMN_DESCRIPTION_X,
                y - LINE_HEIGHT * offset as f32,
                text,
                Weight::Regular,
                BODY_SIZE,
            );
        }
        let quantity = format_trimmed(line.quantity_milli, QUANTITY_SCALE);
        let price = unit_price_text(line.unit_price_micro, computed.digits);
        doc.text_right(
            COLUMN_QUANTITY_RIGHT,
            y,
            &quantity,
            Weight::Regular,
            BODY_SIZE,
        );
        doc.text_right(COLUMN_PRICE_RIGHT, y, &price, Weight::Regular, BODY_SIZE);
        doc.text_right(
            COLUMN_TAX_RIGHT,
            y,
            &format!("{}%", format_trimmed(line.tax_rate, RATE_SCALE)),
            Weight::Regular,
            BODY_SIZE,
        );
        doc.text_right(
            COLUMN_AMOUNT_RIGHT,
            y,
            &format_fixed(line.net_minor, computed.digits, true),
            Weight::Regular,
            BODY_SIZE,
        );
        doc.y -= height;
    }

    // Totals: kept together on one page.
    let total_rows = 2 + computed.tax_groups.len();
    doc.ensure_room(LINE_HEIGHT * total_rows as f32 + 30.0);
    let y = doc.y + 4.0;
    doc.rule(y, 0.5);
    doc.y -= 12.0;
    let amount = |minor: u128| {
        format!(
            "{} {}",
            computed.currency,
            format_fixed(minor, computed.digits, true)
        )
    };
    total_row(
        &mut doc,
        "Subtotal",
        &amount(computed.subtotal),
        Weight::Regular,
    );
    // Untaxed lines need no "Tax 0%" row; the metadata still lists them.
    for (rate, (_, tax)) in computed.tax_groups.iter().filter(|(rate, _)| **rate > 0) {
        total_row(
            &mut doc,
            &format!("Tax {}%", format_trimmed(*rate, RATE_SCALE)),
            &amount(*tax),
            Weight::Regular,
        );
    }
    let total_label = if kind == Kind::Invoice {
        "Total due"
    } else {
        "Total paid"
    };
    doc.y -= 3.0;
    total_row(&mut doc, total_label, &amount(computed.total), Weight::Bold);

    // Notes.
    let notes = string("notes");
    if !notes.is_empty() {
        doc.y -= 10.0;
        doc.ensure_room(LINE_HEIGHT * 2.0);
        let y = doc.y;
        doc.text(MARGIN, y, "Notes", Weight::Bold, BODY_SIZE);
        doc.y -= LINE_HEIGHT;
        for text in wrap(notes, Weight::Regular, BODY_SIZE, text_width, 30) {
            doc.ensure_room(LINE_HEIGHT);
            let y = doc.y;
            doc.text(MARGIN, y, &text, Weight::Regular, BODY_SIZE);
            doc.y -= LINE_HEIGHT;
        }
    }
    let page_count = doc.page_count();
    (doc.finish(), page_count)
}

/// A unit price with at least the currency's minor-unit digits (`18.90`)
/// and up to six when the price has them (`0.0125`).
fn unit_price_text(micro: u128, digits: u32) -> String {
    let text = format_trimmed(micro, PRICE_SCALE);
    let fraction_digits = text
        .split_once('.')
        .map_or(0, |(_, fraction)| fraction.len()) as u32;
    if fraction_digits >= digits {
        return text;
    }
    let separator = if fraction_digits == 0 { "." } else { "" };
    format!(
        "{text}{separator}{}",
        "0".repeat((digits - fraction_digits) as usize)
    )
}

/// A labelled name-and-address block.
fn block(doc: &mut Document, label: &str, name: &str, address: &str, width: f32) {
    let mut rows = vec![(
        fit(name, Weight::Regular, BODY_SIZE, width),
        Weight::Regular,
    )];
    for line in address.lines().take(6) {
        rows.push((
            fit(line, Weight::Regular, BODY_SIZE, width),
            Weight::Regular,
        ));
    }
    doc.ensure_room(LINE_HEIGHT * (rows.len() + 1) as f32);
    let y = doc.y;
    doc.text(MARGIN, y, label, Weight::Bold, BODY_SIZE);
    doc.y -= LINE_HEIGHT;
    for (text, weight) in rows {
        let y = doc.y;
        doc.text(MARGIN, y, &text, weight, BODY_SIZE);
        doc.y -= LINE_HEIGHT;
    }
    doc.y -= 6.0;
}

fn table_header(doc: &mut Document) {
    let y = doc.y;
    doc.text(
        COLUMN_DESCRIPTION_X,
        y,
        "Description",
        Weight::Bold,
        BODY_SIZE,
    );
    doc.text_right(COLUMN_QUANTITY_RIGHT, y, "Qty", Weight::Bold, BODY_SIZE);
    doc.text_right(COLUMN_PRICE_RIGHT, y, "Unit price", Weight::Bold, BODY_SIZE);
    doc.text_right(COLUMN_TAX_RIGHT, y, "Tax", Weight::Bold, BODY_SIZE);
    doc.text_right(COLUMN_AMOUNT_RIGHT, y, "Amount", Weight::Bold, BODY_SIZE);
    doc.rule(y - 4.0, 0.5);
    doc.y -= LINE_HEIGHT + 4.0;
}

fn total_row(doc: &mut Document, label: &str, value: &str, weight: Weight) {
    let y = doc.y;
    doc.text_right(COLUMN_PRICE_RIGHT, y, label, weight, BODY_SIZE);
    doc.text_right(COLUMN_AMOUNT_RIGHT, y, value, weight, BODY_SIZE);
    doc.y -= LINE_HEIGHT;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invoice(items: Value) -> Value {
        json!({"client_name": "ACME", "due_date": "2026-02-01", "items": items})
    }

    fn pdf_text(output: &Value) -> String {
        let bytes = BASE64.decode(output["pdf"].as_str().unwrap()).unwrap();
        let document = lopdf::Document::load_mem(&bytes).unwrap();
        let pages: Vec<u32> = document.get_pages().keys().copied().collect();
        document.extract_text(&pages).unwrap()
    }

    #[test]
    fn totals_are_exact_for_decimal_prices() {
        let output = generate_invoice(&invoice(json!([
            {"description": "a", "quantity": 1, "unit_price": 0.1},
            {"description": "b", "quantity": 1, "unit_price": 0.2}
        ])))
        .unwrap();
        assert_eq!(output["metadata"]["total"], "0.30");
        assert_eq!(output["metadata"]["total_minor"], 30);
        assert!(pdf_text(&output).contains("Total due"));
        assert!(pdf_text(&output).contains("USD 0.30"));
    }

    #[test]
    fn lines_round_half_up_and_tax_is_per_rate() {
        // 3 × 0.335 = 1.005 → 1.01; 1.01 at 8.25% = 0.083325 → 0.08.
        let output = generate_invoice(&invoice(json!([
            {"description": "x", "quantity": 3, "unit_price": "0.335", "tax_rate": 8.25}
        ])))
        .unwrap();
        let metadata = &output["metadata"];
        assert_eq!(metadata["subtotal"], "1.01");
        assert_eq!(metadata["tax"], "0.08");
        assert_eq!(metadata["total"], "1.09");
        // Two lines at one rate are taxed on their sum: 0.10 at 10% is 0.01,
        // where rounding each line's 0.005 would give 0.02.
        let output = generate_invoice(&invoice(json!([
            {"description": "x", "quantity": 1, "unit_price": "0.05", "tax_rate": 10},
            {"description": "y", "quantity": 1, "unit_price": "0.05", "tax_rate": 10}
        ])))
        .unwrap();
        assert_eq!(output["metadata"]["tax"], "0.01");
        assert_eq!(output["metadata"]["tax_breakdown"][0]["taxable"], "0.10");
    }

    #[test]
    fn currencies_set_minor_units() {
        let yen = json!({"client_name": "A", "due_date": "2026-01-01", "currency": "JPY",
                         "items": [{"description": "x", "quantity": "1.5", "unit_price": 1001}]});
        let output = generate_invoice(&yen).unwrap();
        // 1.5 × 1001 = 1501.5 → 1502 yen.
        assert_eq!(output["metadata"]["total"], "1502");
        assert_eq!(output["metadata"]["minor_unit_digits"], 0);
        let dinar = json!({"client_name": "A", "due_date": "2026-01-01", "currency": "KWD",
                           "items": [{"description": "x", "quantity": 1, "unit_price": "1.2345"}]});
        assert_eq!(
            generate_invoice(&dinar).unwrap()["metadata"]["total"],
            "1.235"
        );
    }

    #[test]
    fn number_is_given_or_derived_deterministically() {
        let input = invoice(json!([{"description": "x", "quantity": 1, "unit_price": 1}]));
        let first = generate_invoice(&input).unwrap();
        let number = first["metadata"]["invoice_number"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(number.starts_with("INV-") && number.len() == 16, "{number}");
        // Same input, byte-identical output.
        assert_eq!(generate_invoice(&input).unwrap(), first);
        let mut other = input.clone();
        other["client_name"] = json!("Other");
        assert_ne!(
            generate_invoice(&other).unwrap()["metadata"]["invoice_number"],
            number.as_str()
        );
        let mut given = input;
        given["invoice_number"] = json!("2026/007");
        let output = generate_invoice(&given).unwrap();
        assert_eq!(output["metadata"]["invoice_number"], "2026/007");
        assert_eq!(output["filename"], "invoice-2026-007.pdf");
    }

    #[test]
    fn rejects_semantic_errors() {
        let bad =
            |input: Value| matches!(generate_invoice(&input), Err(HandlerError::InvalidInput(_)));
        assert!(bad(
            json!({"client_name": "A", "due_date": "2026-02-30", "items": [{"description": "x", "quantity": 1, "unit_price": 1}]})
        ));
        assert!(bad(
            json!({"client_name": "A", "issue_date": "2026-03-01", "due_date": "2026-02-01", "items": [{"description": "x", "quantity": 1, "unit_price": 1}]})
        ));
        assert!(bad(
            json!({"client_name": "A", "items": [{"description": "x", "quantity": 1, "unit_price": 1}]})
        ));
        assert!(bad(invoice(json!([]))));
        assert!(bad(invoice(
            json!([{"description": "x", "quantity": 0, "unit_price": 1}])
        )));
        assert!(bad(invoice(
            json!([{"description": "x", "quantity": 1, "unit_price": -1}])
        )));
        assert!(bad(invoice(
            json!([{"description": "x", "quantity": 1, "unit_price": "0.0000001"}])
        )));
        assert!(bad(invoice(
            json!([{"description": "x", "quantity": 1, "unit_price": 1, "tax_rate": 101}])
        )));
        assert!(bad(invoice(json!([{"description": "x", "quantity": 1}]))));
        assert!(bad(json!("not an object")));
        let mut too_many_items = Vec::new();
        too_many_items.resize(
            LINE_ITEMS_MAX + 1,
            json!({"description": "x", "quantity": 1, "unit_price": 1}),
        );
        assert!(bad(invoice(Value::Array(too_many_items))));
        // 200 lines at the largest quantity and price pass 2^53 minor units.
        let mut huge = Vec::new();
        huge.resize(
            LINE_ITEMS_MAX,
            json!({"description": "x", "quantity": 9_999_999, "unit_price": 999_999_999}),
        );
        assert!(bad(invoice(Value::Array(huge))));
    }

    #[test]
    fn the_largest_invoice_paginates_and_keeps_every_line() {
        let items: Vec<Value> = (0..LINE_ITEMS_MAX)
            .map(|index| json!({"description": format!("Item number {index} with a description long enough to wrap onto a second line of the table"), "quantity": 1, "unit_price": "1.00"}))
            .collect();
        let output = generate_invoice(&invoice(Value::Array(items))).unwrap();
        assert!(output["metadata"]["pages"].as_u64().unwrap() > 1);
        assert_eq!(output["metadata"]["total"], "200.00");
        let text = pdf_text(&output);
        assert!(text.contains("Item number 199"));
        assert!(text.contains("USD 200.00"));
        let pages = output["metadata"]["pages"].as_u64().unwrap();
        assert!(text.contains(&format!("Page {pages} of {pages}")));
    }

    #[test]
    fn unit_prices_show_at_least_the_currency_digits() {
        assert_eq!(unit_price_text(18_900_000, 2), "18.90");
        assert_eq!(unit_price_text(18_000_000, 2), "18.00");
        assert_eq!(unit_price_text(12_500, 2), "0.0125");
        assert_eq!(unit_price_text(1_000_000_000, 0), "1000");
        assert_eq!(unit_price_text(1_500_000, 3), "1.500");
    }

    #[test]
    fn receipt_shows_payment_and_total_paid() {
        let output = generate_receipt(&json!({
            "client_name": "Jane", "payment_method": "Card", "currency": "EUR",
            "items": [{"description": "Café crème", "quantity": 2, "unit_price": "3.10", "tax_rate": "19"}]
        }))
        .unwrap();
        assert_eq!(output["metadata"]["total"], "7.38"); // 6.20 + 1.178 → 1.18
        assert!(
            output["metadata"]["receipt_number"]
                .as_str()
                .unwrap()
                .starts_with("RCT-")
        );
        let text = pdf_text(&output);
        assert!(text.contains("Total paid"));
        assert!(text.contains("EUR 7.38"));
        assert!(text.contains("Card"));
    }
}
