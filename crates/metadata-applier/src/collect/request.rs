//! `request`: a JSON document at a URL, fetched again only when its Last-Modified advances.

use std::time::Duration;

use super::{explode, CollectContext, Collector, SourceError};
use crate::json::{self, Value};

/// The request collector. Its Last-Modified and last result live as long as the process, so
/// an unchanged document is neither fetched again nor dropped from the cycle's files.
#[derive(Debug)]
pub struct Request {
    url: Option<String>,
    deployment_keys: Vec<String>,
    agent: ureq::Agent,
    last_modified: Option<i64>,
    last_result: Option<Vec<(String, Value)>>,
}

impl Request {
    pub fn new(url: Option<String>, timeout: Duration, deployment_keys: Vec<String>) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(timeout))
            .timeout_global(Some(timeout))
            .http_status_as_error(true)
            .build()
            .into();
        Request {
            url,
            deployment_keys,
            agent,
            last_modified: None,
            last_result: None,
        }
    }

    fn unavailable(url: &str, error: impl std::fmt::Display) -> SourceError {
        SourceError::NotAvailable(format!("{url}: {error}"))
    }

    fn failed(url: &str, error: &ureq::Error) -> SourceError {
        SourceError::NotAvailable(format!("{url}: {}", super::http_error(error)))
    }
}

impl Collector for Request {
    fn name(&self) -> &str {
        "request"
    }

    fn collect(&mut self, _: &CollectContext) -> Result<Vec<(String, Value)>, SourceError> {
        let Some(url) = self.url.clone() else {
            tracing::info!("No metadata_url configured.");
            return Err(SourceError::NotConfigured);
        };
        // Only the header matters: a server that refuses HEAD (405, a presigned GET URL) is
        // fetched every time, as one that sends no Last-Modified.
        let head = self.agent.head(&url).call().ok();
        let header = head
            .as_ref()
            .and_then(|h| h.headers().get("last-modified"))
            .and_then(|h| h.to_str().ok());
        let modified = header.and_then(|text| {
            let parsed = parse_http_date(text);
            if parsed.is_none() {
                tracing::warn!("Ignoring an unparsable Last-Modified: {text}");
            }
            parsed
        });
        if let (Some(modified), Some(previous), Some(result)) =
            (modified, self.last_modified, &self.last_result)
        {
            if modified < previous {
                tracing::warn!("Last-Modified is older than previous collection");
            }
            if modified <= previous {
                return Ok(result.clone());
            }
        }
        let mut response = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| Self::failed(&url, &e))?;
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| Self::unavailable(&url, e))?;
        let content = match json::parse(&body) {
            Ok(value @ Value::Object(_)) => value,
            Ok(_) => return Err(Self::unavailable(&url, "not a JSON object")),
            Err(e) => {
                tracing::warn!("Failed to parse as json. ({e})");
                return Err(Self::unavailable(&url, e));
            }
        };
        let result = explode("request", content, &self.deployment_keys);
        self.last_modified = modified;
        self.last_result = Some(result.clone());
        Ok(result)
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Seconds since the epoch of an HTTP date: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`),
/// RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) or asctime (`Sun Nov  6 08:49:37 1994`).
pub fn parse_http_date(text: &str) -> Option<i64> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let (day, month, year, time) = match fields.as_slice() {
        [_, day, month, year, time, "GMT"] if year.len() == 4 => {
            (*day, *month, year.parse().ok()?, *time)
        }
        [_, date, time, "GMT"] => {
            let mut parts = date.split('-');
            let (day, month, year) = (parts.next()?, parts.next()?, parts.next()?);
            let year: i64 = year.parse().ok()?;
            (
                day,
                month,
                if year < 70 { 2000 + year } else { 1900 + year },
                *time,
            )
        }
        [_, month, day, time, year] => (*day, *month, year.parse().ok()?, *time),
        _ => return None,
    };
    // Years past 9999 are not dates a server means, and would overflow the arithmetic.
    if !(1..=9999).contains(&year) {
        return None;
    }
    let day: i64 = day.parse().ok()?;
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let mut hms = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        let expected = Some(784_111_777);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), expected);
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), expected);
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), expected);
        assert_eq!(parse_http_date("Wed, 21 Oct 2015 07:28:00 +0000"), None);
        assert_eq!(parse_http_date("yesterday"), None);
        assert_eq!(
            parse_http_date("Sun Nov  6 08:49:37 9223372036854775807"),
            None
        );
    }
}
