//! `data-insight` (silver): `analyze-csv` (per-column descriptive statistics)
//! and `forecast` (Holt's linear-trend exponential smoothing with prediction
//! intervals).
//!
//! Statistics are floats by nature; they use numerically stable forms
//! (Welford's running mean and variance, linear-interpolated quantiles on the
//! sorted column). Every loop is bounded by the input caps below.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::{ActionSpec, CapabilitySpec, example};
use crate::catalog::model::HandlerError;
use crate::catalog::schema::MAX_BYTES_KEYWORD;
use crate::gate::Tier;

pub const CSV_BYTES_MAX: usize = 1024 * 1024;
pub const CSV_ROWS_MAX: usize = 10_000;
pub const CSV_COLUMNS_MAX: usize = 100;
const QUANTILES_MAX: usize = 20;
const DEFAULT_QUANTILES: [f64; 3] = [0.25, 0.5, 0.75];
/// Distinct values are counted up to this many per text column.
const DISTINCT_COUNT_MAX: usize = 1_000;
/// Cells that mean "no value".
const NULL_MARKERS: [&str; 6] = ["", "na", "n/a", "null", "none", "nan"];

pub const SERIES_POINTS_MAX: usize = 10_000;
pub const SERIES_POINTS_MIN: usize = 3;
pub const PERIODS_MAX: u64 = 1_000;
/// Series values are bounded so no intermediate can overflow an f64.
const SERIES_VALUE_ABS_MAX: f64 = 1e12;
/// Grid for fitting α and β when the caller gives neither.
const ALPHA_GRID: [f64; 20] = [
    0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85,
    0.9, 0.95, 1.0,
];
const BETA_GRID: [f64; 20] = [
    0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8,
    0.85, 0.9, 0.95,
];

pub(super) fn capability() -> CapabilitySpec {
    CapabilitySpec {
        name: "data-insight",
        version: "1.0.0",
        description: "Descriptive statistics for CSV data and time-series forecasts with prediction intervals.",
        tags: &["data", "csv", "statistics", "forecast", "analytics"],
        actions: vec![analyze_csv_action(), forecast_action()],
    }
}

fn analyze_csv_action() -> ActionSpec {
    ActionSpec {
        name: "analyze-csv",
        description: "Per-column count, nulls, mean, standard deviation, min, max and quantiles of a CSV (up to 1 MiB, 10,000 rows, 100 columns).",
        price: "$0.01",
        tier: Tier::Silver,
        rate_limit_rpm: Some(60),
        input_schema: json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["csv"],
            "properties": {
                "csv": {"type": "string", "minLength": 1, "maxLength": CSV_BYTES_MAX,
                        "description": "CSV text, at most 1 MiB, 10,000 data rows and 100 columns."},
                "has_header": {"type": "boolean", "default": true},
                "delimiter": {"enum": [",", ";", "\t", "|"], "default": ","},
                "quantiles": {"type": "array", "maxItems": QUANTILES_MAX, "uniqueItems": true,
                              "items": {"type": "number", "minimum": 0, "maximum": 1},
                              "default": DEFAULT_QUANTILES}
            },
            MAX_BYTES_KEYWORD: 6 * CSV_BYTES_MAX + 4096,
        }),
        output_schema: json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["rows", "columns"],
            "properties": {
                "rows": {"type": "integer", "minimum": 0, "maximum": CSV_ROWS_MAX},
                "columns": {
                    "type": "array",
                    "maxItems": CSV_COLUMNS_MAX,
                    "items": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["name", "type", "count", "nulls", "mean", "stddev", "min", "max", "quantiles"],
                        "properties": {
                            "name": {"type": "string"},
                            "type": {"enum": ["numeric", "text", "empty"]},
                            "count": {"type": "integer", "minimum": 0},
                            "nulls": {"type": "integer", "minimum": 0},
                            "distinct": {"type": "integer", "minimum": 0},
                            "mean": {"type": ["number", "null"]},
                            "stddev": {"type": ["number", "null"]},
                            "min": {"type": ["number", "null"]},
                            "max": {"type": ["number", "null"]},
                            "quantiles": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "additionalProperties": false,
                                    "required": ["p", "value"],
                                    "properties": {"p": {"type": "number"}, "value": {"type": ["number", "null"]}}
                                }
                            }
                        }
                    }
                }
            }
        }),
        examples: vec![example(
            json!({"csv": "city,temp\nOslo,4\nRome,18\nLima,\nCairo,30\n", "quantiles": [0.5]}),
            json!({
                "rows": 4,
                "columns": [
                    {"name": "city", "type": "text", "count": 4, "nulls": 0, "distinct": 4,
                     "mean": null, "stddev": null, "min": null, "max": null,
                     "quantiles": [{"p": 0.5, "value": null}]},
                    {"name": "temp", "type": "numeric", "count": 3, "nulls": 1, "distinct": 3,
                     "mean": 17.333333333333332, "stddev": 13.012814197295423, "min": 4.0, "max": 30.0,
                     "quantiles": [{"p": 0.5, "value": 18.0}]}
                ]
            }),
        )],
        handler: analyze_csv,
        heavy: true,
    }
}

fn forecast_action() -> ActionSpec {
    ActionSpec {
        name: "forecast",
        description: "Holt's linear-trend exponential smoothing: the next `periods` values of a series, with prediction intervals.",
        price: "$0.02",
        tier: Tier::Silver,
        rate_limit_rpm: Some(60),
        input_schema: json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["series", "periods"],
            "properties": {
                "series": {"type": "array", "minItems": SERIES_POINTS_MIN, "maxItems": SERIES_POINTS_MAX,
                           "items": {"type": "number", "minimum": -SERIES_VALUE_ABS_MAX, "maximum": SERIES_VALUE_ABS_MAX},
                           "description": "Equally spaced observations, oldest first."},
                "periods": {"type": "integer", "minimum": 1, "maximum": PERIODS_MAX},
                "alpha": {"type": "number", "exclusiveMinimum": 0, "maximum": 1,
                          "description": "Level smoothing; fitted by least squares when both alpha and beta are absent."},
                "beta": {"type": "number", "minimum": 0, "maximum": 1,
                         "description": "Trend smoothing."},
                "confidence": {"type": "number", "minimum": 0.5, "maximum": 0.999, "default": 0.95}
            },
            MAX_BYTES_KEYWORD: 512 * 1024,
        }),
        output_schema: json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["method", "alpha", "beta", "fitted_parameters", "level", "trend", "sigma", "confidence", "forecast"],
            "properties": {
                "method": {"const": "holt-linear"},
                "alpha": {"type": "number"},
                "beta": {"type": "number"},
                "fitted_parameters": {"type": "boolean"},
                "level": {"type": "number"},
                "trend": {"type": "number"},
                "sigma": {"type": "number", "minimum": 0},
                "confidence": {"type": "number"},
                "forecast": {
                    "type": "array",
                    "maxItems": PERIODS_MAX,
                    "items": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["step", "value", "lower", "upper"],
                        "properties": {
                            "step": {"type": "integer", "minimum": 1},
                            "value": {"type": "number"},
                            "lower": {"type": "number"},
                            "upper": {"type": "number"}
                        }
                    }
                }
            }
        }),
        examples: vec![example(
            json!({"series": [10, 12, 14, 16, 18], "periods": 2, "alpha": 0.5, "beta": 0.5}),
            json!({
                "method": "holt-linear", "alpha": 0.5, "beta": 0.5, "fitted_parameters": false,
                "level": 18.0, "trend": 2.0, "sigma": 0.0, "confidence": 0.95,
                "forecast": [
                    {"step": 1, "value": 20.0, "lower": 20.0, "upper": 20.0},
                    {"step": 2, "value": 22.0, "lower": 22.0, "upper": 22.0}
                ]
            }),
        )],
        handler: forecast,
        heavy: true,
    }
}

// ---------------------------------------------------------------- analyze-csv

/// Per-column accumulator.
#[derive(Debug, Default)]
struct ColumnStats {
    name: String,
    nulls: u64,
    /// Non-null cells.
    count: u64,
    /// Parsed numeric values; the column is numeric when every non-null
    /// cell parsed.
    numbers: Vec<f64>,
    all_numeric: bool,
    distinct: HashSet<String>,
    distinct_overflow: bool,
}

impl ColumnStats {
    fn new(name: String) -> ColumnStats {
        ColumnStats {
            name,
            all_numeric: true,
            ..ColumnStats::default()
        }
    }

    fn push(&mut self, cell: &str) {
        let cell = cell.trim();
        if NULL_MARKERS
            .iter()
            .any(|marker| marker.eq_ignore_ascii_case(cell))
        {
            self.nulls += 1;
            return;
        }
        self.count += 1;
        if !self.distinct_overflow && !self.distinct.contains(cell) {
            if self.distinct.len() >= DISTINCT_COUNT_MAX {
                self.distinct_overflow = true;
            } else {
                self.distinct.insert(cell.to_owned());
            }
        }
        if self.all_numeric {
            match parse_number(cell) {
                Some(number) => self.numbers.push(number),
                None => {
                    self.all_numeric = false;
                    self.numbers = Vec::new();
                }
            }
        }
    }

    fn into_json(mut self, quantiles: &[f64]) -> Value {
        let kind = if self.count == 0 {
            "empty"
        } else if self.all_numeric {
            "numeric"
        } else {
            "text"
        };
        let numeric = kind == "numeric";
        let (mean, stddev) = if numeric {
            mean_and_sample_stddev(&self.numbers)
        } else {
            (None, None)
        };
        self.numbers.sort_by(f64::total_cmp);
        let sorted = &self.numbers;
        let quantile_values: Vec<Value> = quantiles
            .iter()
            .map(|p| json!({"p": p, "value": if numeric { finite(quantile_sorted(sorted, *p)) } else { Value::Null }}))
            .collect();
        json!({
            "name": self.name,
            "type": kind,
            "count": self.count,
            "nulls": self.nulls,
            "distinct": self.distinct.len(),
            "mean": mean.map_or(Value::Null, finite),
            "stddev": stddev.map_or(Value::Null, finite),
            "min": if numeric { sorted.first().copied().map_or(Value::Null, finite) } else { Value::Null },
            "max": if numeric { sorted.last().copied().map_or(Value::Null, finite) } else { Value::Null },
            "quantiles": quantile_values,
        })
    }
}

/// A finite decimal number; `inf`, `NaN` and friends are not data.
fn parse_number(cell: &str) -> Option<f64> {
    let looks_numeric = cell
        .bytes()
        .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
        && cell.bytes().any(|b| b.is_ascii_digit());
    if !looks_numeric {
        return None;
    }
    cell.parse::<f64>().ok().filter(|number| number.is_finite())
}

/// A JSON number, or null when the value is not finite.
fn finite(value: f64) -> Value {
    if value.is_finite() {
        json!(value)
    } else {
        Value::Null
    }
}

/// Welford's algorithm; the standard deviation is the sample one (n - 1) and
/// needs two values.
fn mean_and_sample_stddev(values: &[f64]) -> (Option<f64>, Option<f64>) {
    if values.is_empty() {
        return (None, None);
    }
    let mut mean = 0.0;
    let mut sum_squares = 0.0;
    for (index, value) in values.iter().enumerate() {
        let delta = value - mean;
        mean += delta / (index + 1) as f64;
        sum_squares += delta * (value - mean);
    }
    let stddev = if values.len() > 1 {
        Some((sum_squares / (values.len() - 1) as f64).max(0.0).sqrt())
    } else {
        None
    };
    (Some(mean), stddev)
}

/// Linear interpolation between closest ranks (Hyndman & Fan type 7, the
/// default of R and NumPy). `sorted` must be ascending and non-empty.
fn quantile_sorted(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let position = p.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lower = position.floor() as usize;
    let upper = (lower + 1).min(sorted.len() - 1);
    let fraction = position - lower as f64;
    sorted[lower] + (sorted[upper] - sorted[lower]) * fraction
}

pub(crate) fn analyze_csv(input: &Value) -> Result<Value, HandlerError> {
    let text = input
        .get("csv")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("`csv` must be a string"))?;
    if text.len() > CSV_BYTES_MAX {
        return Err(invalid("`csv` is larger than 1 MiB"));
    }
    let has_header = match input.get("has_header") {
        None => true,
        Some(value) => value
            .as_bool()
            .ok_or_else(|| invalid("`has_header` must be a boolean"))?,
    };
    let delimiter = match input.get("delimiter").map(Value::as_str) {
        None => b',',
        Some(Some(",")) => b',',
        Some(Some(";")) => b';',
        Some(Some("\t")) => b'\t',
        Some(Some("|")) => b'|',
        Some(_) => return Err(invalid("`delimiter` must be one of , ; | or a tab")),
    };
    let quantiles: Vec<f64> = match input.get("quantiles") {
        None => DEFAULT_QUANTILES.to_vec(),
        Some(Value::Array(items)) if items.len() <= QUANTILES_MAX => items
            .iter()
            .map(|item| item.as_f64().filter(|p| (0.0..=1.0).contains(p)))
            .collect::<Option<Vec<f64>>>()
            .ok_or_else(|| invalid("`quantiles` must be numbers from 0 to 1"))?,
        Some(_) => {
            return Err(invalid(&format!(
                "`quantiles` must be an array of at most {QUANTILES_MAX} numbers"
            )));
        }
    };

    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut columns: Vec<ColumnStats> = Vec::new();
    let mut rows: usize = 0;
    let mut record = csv::StringRecord::new();
    let mut first = true;
    loop {
        let more = reader
            .read_record(&mut record)
            .map_err(|error| invalid(&format!("the CSV is malformed: {error}")))?;
        if !more {
            break;
        }
        let line = record.position().map_or(0, csv::Position::line);
        if first {
            first = false;
            if record.len() > CSV_COLUMNS_MAX {
                return Err(invalid(&format!(
                    "the CSV has more than {CSV_COLUMNS_MAX} columns"
                )));
            }
            columns = record
                .iter()
                .enumerate()
                .map(|(index, name)| {
                    let name = name.trim();
                    let name = if !has_header || name.is_empty() {
                        format!("column_{}", index + 1)
                    } else {
                        name.to_owned()
                    };
                    ColumnStats::new(name)
                })
                .collect();
            if has_header {
                continue;
            }
        }
        if record.len() > columns.len() {
            return Err(invalid(&format!(
                "CSV line {line} has {} fields, more than the {} columns of the first row",
                record.len(),
                columns.len()
            )));
        }
        rows += 1;
        if rows > CSV_ROWS_MAX {
            return Err(invalid(&format!(
                "the CSV has more than {CSV_ROWS_MAX} data rows"
            )));
        }
        // Missing trailing fields count as nulls.
        for (index, column) in columns.iter_mut().enumerate() {
            column.push(record.get(index).unwrap_or(""));
        }
    }
    if columns.is_empty() {
        return Err(invalid("the CSV has no rows"));
    }
    let columns: Vec<Value> = columns
        .into_iter()
        .map(|column| column.into_json(&quantiles))
        .collect();
    Ok(json!({"rows": rows, "columns": columns}))
}

// ------------------------------------------------------------------- forecast

/// Result of running Holt's recursions over a series.
#[derive(Clone, Copy, Debug)]
struct HoltFit {
    level: f64,
    trend: f64,
    /// Sum of squared one-step-ahead errors.
    sse: f64,
    /// How many errors went into `sse`.
    errors: usize,
}

/// Holt's linear method in error-correction form, initialised with
/// level = y0 and trend = y1 - y0 (so the first one-step error is zero and
/// not counted).
fn holt(series: &[f64], alpha: f64, beta: f64) -> HoltFit {
    let mut level = series[0];
    let mut trend = series[1] - series[0];
    let mut sse = 0.0;
    let mut errors = 0;
    for (index, &observed) in series.iter().enumerate().skip(1) {
        let predicted = level + trend;
        if index >= 2 {
            let error = observed - predicted;
            sse += error * error;
            errors += 1;
        }
        let previous_level = level;
        level = alpha * observed + (1.0 - alpha) * predicted;
        trend = beta * (level - previous_level) + (1.0 - beta) * trend;
    }
    HoltFit {
        level,
        trend,
        sse,
        errors,
    }
}

/// Φ⁻¹(p), the standard normal quantile (Acklam's rational approximation,
/// relative error below 1.2e-9). `p` must be in (0, 1).
fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.024_25;
    if p < LOW {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -normal_quantile(1.0 - p)
    }
}

pub(crate) fn forecast(input: &Value) -> Result<Value, HandlerError> {
    let series: Vec<f64> = input
        .get("series")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("`series` must be an array of numbers"))?
        .iter()
        .map(|value| {
            value
                .as_f64()
                .filter(|number| number.abs() <= SERIES_VALUE_ABS_MAX)
        })
        .collect::<Option<Vec<f64>>>()
        .ok_or_else(|| invalid("`series` values must be numbers within ±1e12"))?;
    if !(SERIES_POINTS_MIN..=SERIES_POINTS_MAX).contains(&series.len()) {
        return Err(invalid(&format!(
            "`series` must have {SERIES_POINTS_MIN} to {SERIES_POINTS_MAX} points"
        )));
    }
    let periods = input
        .get("periods")
        .and_then(Value::as_u64)
        .filter(|periods| (1..=PERIODS_MAX).contains(periods))
        .ok_or_else(|| {
            invalid(&format!(
                "`periods` must be an integer from 1 to {PERIODS_MAX}"
            ))
        })?;
    let parameter =
        |name: &str, range: std::ops::RangeInclusive<f64>| -> Result<Option<f64>, HandlerError> {
            match input.get(name) {
                None => Ok(None),
                Some(value) => value
                    .as_f64()
                    .filter(|number| range.contains(number))
                    .map(Some)
                    .ok_or_else(|| {
                        invalid(&format!(
                            "`{name}` must be a number in [{}, {}]",
                            range.start(),
                            range.end()
                        ))
                    }),
            }
        };
    let alpha = parameter("alpha", 0.0..=1.0)?;
    if alpha == Some(0.0) {
        return Err(invalid("`alpha` must be greater than 0"));
    }
    let beta = parameter("beta", 0.0..=1.0)?;
    let confidence = parameter("confidence", 0.5..=0.999)?.unwrap_or(0.95);

    let fitted_parameters = alpha.is_none() && beta.is_none();
    let (alpha, beta) = match (alpha, beta) {
        (None, None) => fit_parameters(&series),
        // One given: fit the other over its grid, holding the given one.
        (Some(alpha), None) => best_of(&series, &[alpha], &BETA_GRID),
        (None, Some(beta)) => best_of(&series, &ALPHA_GRID, &[beta]),
        (Some(alpha), Some(beta)) => (alpha, beta),
    };
    let fit = holt(&series, alpha, beta);
    let degrees_of_freedom = fit.errors.saturating_sub(2).max(1);
    let sigma = if fit.errors == 0 {
        0.0
    } else {
        (fit.sse / degrees_of_freedom as f64).sqrt()
    };
    let z = normal_quantile(0.5 + confidence / 2.0);
    // Variance of the h-step error for ETS(A,A,N) (Hyndman & Athanasopoulos,
    // FPP3 §8.7): σ²[1 + (h−1)(α² + αβ*h + β*²h(2h−1)/6)] with β* = αβ.
    let beta_star = alpha * beta;
    let points: Vec<Value> = (1..=periods)
        .map(|step| {
            let h = step as f64;
            let value = fit.level + h * fit.trend;
            let spread = 1.0
                + (h - 1.0) * (alpha * alpha + alpha * beta_star * h + beta_star * beta_star * h * (2.0 * h - 1.0) / 6.0);
            let half_width = z * sigma * spread.sqrt();
            json!({"step": step, "value": value, "lower": value - half_width, "upper": value + half_width})
        })
        .collect();
    Ok(json!({
        "method": "holt-linear",
        "alpha": alpha,
        "beta": beta,
        "fitted_parameters": fitted_parameters,
        "level": fit.level,
        "trend": fit.trend,
        "sigma": sigma,
        "confidence": confidence,
        "forecast": points,
    }))
}

/// Least-squares α and β over the grid (first minimum wins, so the result
/// is deterministic).
fn fit_parameters(series: &[f64]) -> (f64, f64) {
    best_of(series, &ALPHA_GRID, &BETA_GRID)
}

fn best_of(series: &[f64], alphas: &[f64], betas: &[f64]) -> (f64, f64) {
    let mut best = (alphas[0], betas[0], f64::INFINITY);
    for &alpha in alphas {
        for &beta in betas {
            let sse = holt(series, alpha, beta).sse;
            if sse < best.2 {
                best = (alpha, beta, sse);
            }
        }
    }
    (best.0, best.1)
}

fn invalid(message: &str) -> HandlerError {
    HandlerError::InvalidInput(message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column<'a>(output: &'a Value, name: &str) -> &'a Value {
        output["columns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|column| column["name"] == name)
            .unwrap()
    }

    #[test]
    fn describes_numeric_and_text_columns() {
        let output = analyze_csv(
            &json!({"csv": "a,b,c\n1,x,\n2,y,\n3,x,\n4,,\n", "quantiles": [0, 0.5, 1]}),
        )
        .unwrap();
        assert_eq!(output["rows"], 4);
        let a = column(&output, "a");
        assert_eq!(a["type"], "numeric");
        assert_eq!(a["count"], 4);
        assert_eq!(a["mean"], 2.5);
        assert!((a["stddev"].as_f64().unwrap() - 1.290_994_448_735_805_6).abs() < 1e-12);
        assert_eq!(a["min"], 1.0);
        assert_eq!(a["max"], 4.0);
        assert_eq!(a["quantiles"][1]["value"], 2.5);
        assert_eq!(a["quantiles"][2]["value"], 4.0);
        let b = column(&output, "b");
        assert_eq!(b["type"], "text");
        assert_eq!(b["nulls"], 1);
        assert_eq!(b["distinct"], 2);
        assert_eq!(b["mean"], Value::Null);
        let c = column(&output, "c");
        assert_eq!(c["type"], "empty");
        assert_eq!(c["nulls"], 4);
    }

    #[test]
    fn handles_headerless_delimited_and_short_rows() {
        let output =
            analyze_csv(&json!({"csv": "1;2\n3\n5;6", "has_header": false, "delimiter": ";"}))
                .unwrap();
        assert_eq!(output["rows"], 3);
        let second = column(&output, "column_2");
        assert_eq!(second["count"], 2);
        assert_eq!(second["nulls"], 1);
        assert_eq!(second["stddev"], 2.828_427_124_746_190_3);
        // One value: a mean but no sample standard deviation.
        let single = analyze_csv(&json!({"csv": "x\n7\n"})).unwrap();
        assert_eq!(single["columns"][0]["mean"], 7.0);
        assert_eq!(single["columns"][0]["stddev"], Value::Null);
        // NaN and inf are not numbers here.
        let markers = analyze_csv(&json!({"csv": "x\nNaN\nNA\n1\n"})).unwrap();
        assert_eq!(markers["columns"][0]["nulls"], 2);
        assert_eq!(markers["columns"][0]["type"], "numeric");
        let infinity = analyze_csv(&json!({"csv": "x\ninf\n1\n"})).unwrap();
        assert_eq!(infinity["columns"][0]["type"], "text");
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let sorted = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_sorted(&sorted, 0.25), 1.75);
        assert_eq!(quantile_sorted(&sorted, 0.5), 2.5);
        assert_eq!(quantile_sorted(&sorted, 1.0), 4.0);
        assert_eq!(quantile_sorted(&[5.0], 0.3), 5.0);
    }

    #[test]
    fn csv_limits_and_errors() {
        let bad = |input: Value| matches!(analyze_csv(&input), Err(HandlerError::InvalidInput(_)));
        let wide: Vec<String> = (0..=CSV_COLUMNS_MAX)
            .map(|index| format!("c{index}"))
            .collect();
        assert!(bad(json!({"csv": wide.join(",")})));
        let mut long = String::from("x\n");
        long.push_str(&"1\n".repeat(CSV_ROWS_MAX + 1));
        assert!(bad(json!({"csv": long})));
        let mut at_limit = String::from("x\n");
        at_limit.push_str(&"1\n".repeat(CSV_ROWS_MAX));
        assert_eq!(
            analyze_csv(&json!({"csv": at_limit})).unwrap()["rows"],
            CSV_ROWS_MAX
        );
        assert!(bad(json!({"csv": "a,b\n1,2,3\n"})));
        assert!(bad(json!({"csv": "x".repeat(CSV_BYTES_MAX + 1)})));
        assert!(bad(json!({"csv": ""})));
        assert!(bad(json!({"csv": "a\n1", "delimiter": "x"})));
        assert!(bad(json!({"csv": "a\n1", "quantiles": [2]})));
        assert!(bad(json!({"csv": 5})));
    }

    #[test]
    fn forecast_continues_a_noiseless_line() {
        let series: Vec<f64> = (0..50).map(|t| 3.0 + 2.5 * t as f64).collect();
        for parameters in [
            json!({}),
            json!({"alpha": 0.3, "beta": 0.1}),
            json!({"alpha": 1.0}),
        ] {
            let mut input = json!({"series": series, "periods": 25});
            for (key, value) in parameters.as_object().unwrap() {
                input[key] = value.clone();
            }
            let output = forecast(&input).unwrap();
            for point in output["forecast"].as_array().unwrap() {
                let step = point["step"].as_f64().unwrap();
                let expected = 3.0 + 2.5 * (49.0 + step);
                assert!(
                    (point["value"].as_f64().unwrap() - expected).abs() < 1e-6,
                    "{point}"
                );
            }
        }
    }

    #[test]
    fn intervals_widen_with_the_horizon() {
        // Deterministic noise around a trend.
        let series: Vec<f64> = (0..60)
            .map(|t| 100.0 + 1.5 * t as f64 + ((t * 37 % 11) as f64 - 5.0))
            .collect();
        let output = forecast(&json!({"series": series, "periods": 30})).unwrap();
        assert_eq!(output["fitted_parameters"], true);
        assert!(output["sigma"].as_f64().unwrap() > 0.0);
        let widths: Vec<f64> = output["forecast"]
            .as_array()
            .unwrap()
            .iter()
            .map(|point| point["upper"].as_f64().unwrap() - point["lower"].as_f64().unwrap())
            .collect();
        for pair in widths.windows(2) {
            assert!(pair[1] > pair[0], "{widths:?}");
        }
        for point in output["forecast"].as_array().unwrap() {
            assert!(point["lower"].as_f64().unwrap() < point["value"].as_f64().unwrap());
        }
        // A higher confidence gives a wider interval.
        let wide = forecast(&json!({"series": series, "periods": 1, "confidence": 0.99})).unwrap();
        let narrow = forecast(&json!({"series": series, "periods": 1, "confidence": 0.8})).unwrap();
        let width = |output: &Value| {
            output["forecast"][0]["upper"].as_f64().unwrap()
                - output["forecast"][0]["lower"].as_f64().unwrap()
        };
        assert!(width(&wide) > width(&narrow));
    }

    #[test]
    fn normal_quantile_matches_tables() {
        assert!((normal_quantile(0.975) - 1.959_963_985).abs() < 1e-8);
        assert!((normal_quantile(0.5)).abs() < 1e-12);
        assert!((normal_quantile(0.995) - 2.575_829_304).abs() < 1e-8);
        assert!((normal_quantile(0.01) + 2.326_347_874).abs() < 1e-8);
    }

    #[test]
    fn forecast_limits_and_errors() {
        let bad = |input: Value| matches!(forecast(&input), Err(HandlerError::InvalidInput(_)));
        assert!(bad(json!({"series": [1, 2], "periods": 1})));
        assert!(bad(json!({"series": [1, 2, 3], "periods": 0})));
        assert!(bad(
            json!({"series": [1, 2, 3], "periods": PERIODS_MAX + 1})
        ));
        assert!(bad(json!({"series": [1, 2, "x"], "periods": 1})));
        assert!(bad(json!({"series": [1, 2, 1e13], "periods": 1})));
        assert!(bad(json!({"series": [1, 2, 3], "periods": 1, "alpha": 0})));
        assert!(bad(json!({"series": [1, 2, 3], "periods": 1, "beta": 1.5})));
        assert!(bad(
            json!({"series": [1, 2, 3], "periods": 1, "confidence": 1})
        ));
        assert!(bad(
            json!({"series": vec![1.0; SERIES_POINTS_MAX + 1], "periods": 1})
        ));
        let largest =
            forecast(&json!({"series": vec![1e12; SERIES_POINTS_MAX], "periods": PERIODS_MAX}))
                .unwrap();
        assert_eq!(
            largest["forecast"].as_array().unwrap().len(),
            PERIODS_MAX as usize
        );
        assert!(largest["forecast"][999]["upper"].is_f64());
    }
}
