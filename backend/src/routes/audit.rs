//! `GET /api/v1/audit`: every run record (including refused starts), filtered like history, as JSON
//! or CSV for export.

use super::described::{doc, ApiRouter};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;

use super::ApiQuery;
use crate::auth::AccountScope;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::HistoryFilter;

pub fn router() -> ApiRouter {
    ApiRouter::default().get(
        "/audit",
        export,
        doc("The audit trail of runs, as JSON or CSV")
            .query::<AuditQuery>()
            .media(
                200,
                "text/csv",
                "With format=csv, the records as CSV; else a JSON array of records",
            ),
    )
}

/// The most records one export holds.
const EXPORT_LIMIT: usize = 100_000;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    format: Option<String>,
    status: Option<String>,
    instance_id: Option<String>,
    requester: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

async fn export(
    State(state): State<AppState>,
    Extension(scope): Extension<AccountScope>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Response, AppError> {
    let filter = HistoryFilter {
        status: q.status,
        instance_id: q.instance_id,
        requester: q.requester,
        since: super::executions::normalise_time("since", q.since.as_deref())?,
        until: super::executions::normalise_time("until", q.until.as_deref())?,
        limit: EXPORT_LIMIT,
        accounts: scope.as_recorded(),
        within: scope.allowed.clone(),
        ..HistoryFilter::default()
    };
    let hub = crate::routes::identity::resolve(&state).await?.account;
    let mut records = state.store.audit(&filter).await?;
    for r in &mut records {
        if r.account.is_empty() {
            r.account.clone_from(&hub);
        }
    }
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(records).into_response()),
        "csv" => csv_download(&records, "imds-console-audit.csv"),
        other => Err(AppError::BadQuery(format!(
            "format \"{other}\" is not supported; use json or csv"
        ))),
    }
}

/// The records as a CSV file to download.
pub(crate) fn csv_download<T: serde::Serialize>(records: &[T], filename: &str) -> Result<Response, AppError> {
    let body = to_csv(records).map_err(AppError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// The records as CSV, every cell that a spreadsheet would run as a formula neutralised.
fn to_csv<T: serde::Serialize>(records: &[T]) -> Result<Vec<u8>, csv::Error> {
    let mut plain = csv::Writer::from_writer(Vec::new());
    for r in records {
        plain.serialize(r)?;
    }
    let plain = plain.into_inner().map_err(|e| e.into_error())?;
    let mut rows = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(plain.as_slice());
    // Every cell quoted: a spreadsheet then takes each as one text cell, whatever its separator.
    let mut out = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Always)
        .from_writer(Vec::new());
    for row in rows.records() {
        let row = row?;
        out.write_record(row.iter().map(|cell| neutralise_cell(cell).into_owned()))?;
    }
    out.into_inner().map_err(|e| e.into_error().into())
}

/// OWASP's advice against CSV injection: a formula start (`=`, `+`, `-`, `@`, a tab or a carriage
/// return) at the beginning of a cell is prefixed with `'`, so a spreadsheet shows it as text instead
/// of running it. So is one after any separator a spreadsheet might split on (`,` `;` `|`, a tab or a
/// line break): a reader set to another separator than ours would otherwise start a cell there
/// (`ok;=cmd|' /C calc'!A0`).
fn neutralise_cell(cell: &str) -> std::borrow::Cow<'_, str> {
    const FORMULA: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];
    const SEPARATOR: [char; 6] = [',', ';', '|', '\t', '\n', '\r'];
    let mut out = String::with_capacity(cell.len() + 2);
    let mut after_separator = true;
    let mut changed = false;
    for c in cell.chars() {
        if after_separator && FORMULA.contains(&c) {
            out.push('\'');
            changed = true;
        }
        // Spaces and quotes a spreadsheet trims or drops while splitting keep the cell's start open.
        after_separator = SEPARATOR.contains(&c) || (after_separator && matches!(c, ' ' | '"' | '\''));
        out.push(c);
    }
    if changed {
        out.into()
    } else {
        cell.into()
    }
}

#[cfg(test)]
mod tests {
    use super::neutralise_cell;

    #[test]
    fn formula_cells_become_text() {
        for bad in ["=HYPERLINK(\"http://x\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(neutralise_cell(bad), format!("'{bad}"));
        }
        for ok in ["Reviewed", "2026-11-27T10:00:00Z", "", "i-0123"] {
            assert_eq!(neutralise_cell(ok), ok);
        }
        assert_eq!(
            neutralise_cell("reason ok;=cmd|' /C calc'!A0"),
            "reason ok;'=cmd|' /C calc'!A0"
        );
        assert_eq!(neutralise_cell("a,@SUM(1)|+2"), "a,'@SUM(1)|'+2");
        assert_eq!(neutralise_cell("line\n-1"), "line\n'-1");
        assert_eq!(neutralise_cell("ok; =cmd"), "ok; '=cmd");
        assert_eq!(neutralise_cell("ok;\"=cmd|x\""), "ok;\"'=cmd|x\"");
    }
}
