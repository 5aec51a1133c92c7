//! Rendering OpenAI-style chat messages with a model's Jinja chat template
//! (`tokenizer.chat_template` in GGUF files), the way Hugging Face `apply_chat_template` does.
//!
//! Environment: `trim_blocks` and `lstrip_blocks` on (as in transformers), Python string/dict
//! methods via `minijinja-contrib`'s pycompat callback, and the globals HF templates expect:
//! `messages`, `add_generation_prompt`, `bos_token`, `eos_token`, `tools` (none),
//! `raise_exception(msg)` and `strftime_now(fmt)`.
//!
//! Rendering is bounded: a fuel budget caps template instructions and the output is capped in
//! size, so a hostile or buggy template in a model file cannot spin or fill memory through its
//! output. Errors never contain message contents.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, Error, ErrorKind, Value};

use crate::EngineError;

/// Template used when a model file has no chat template: ChatML (`<|im_start|>role\n...<|im_end|>`),
/// the format of Qwen, SmolLM and many fine-tunes, and harmless text for base models.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Template instructions allowed per render (a long conversation needs ~100 per message).
const FUEL: u64 = 5_000_000;
/// Output allowed beyond twice the size of the message contents.
const OUTPUT_SLACK: usize = 1 << 20;
/// Marker detail for errors raised by `raise_exception` (its message is dropped, see
/// [`EngineError::ChatTemplateException`]).
const RAISED: &str = "sotto: raise_exception";

/// One chat message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    /// `"system"`, `"user"` or `"assistant"` (passed to the template as-is).
    pub role: String,
    /// Message text.
    pub content: String,
}

/// Renders `messages` with `template` (a Jinja chat template), `strftime_now` reading the
/// current UTC time.
///
/// Errors: [`EngineError::ChatTemplateInvalid`] (syntax), [`EngineError::ChatTemplateException`]
/// (`raise_exception` called), [`EngineError::ChatTemplateRender`] (other runtime errors) and
/// [`EngineError::ChatTemplateLimit`] (fuel or output size exhausted).
pub fn render_chat(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
) -> Result<String, EngineError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    render_chat_at(
        template,
        messages,
        add_generation_prompt,
        bos_token,
        eos_token,
        now,
    )
}

/// [`render_chat`] with `strftime_now` evaluated at `now_unix` (seconds since the Unix epoch,
/// UTC), for deterministic output.
pub fn render_chat_at(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
    now_unix: i64,
) -> Result<String, EngineError> {
    let mut env = Environment::new();
    let mut syntax = SyntaxConfig::builder();
    syntax.trim_blocks(true).lstrip_blocks(true);
    env.set_syntax(
        syntax
            .build()
            .map_err(|e| EngineError::ChatTemplateInvalid(describe(&e)))?,
    );
    env.set_fuel(Some(FUEL));
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |_msg: Value| -> Result<Value, Error> {
        Err(Error::new(ErrorKind::InvalidOperation, RAISED))
    });
    env.add_function("strftime_now", move |fmt: &str| -> Result<String, Error> {
        strftime(fmt, now_unix)
            .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "unsupported strftime format"))
    });
    let tmpl = env
        .template_from_str(template)
        .map_err(|e| EngineError::ChatTemplateInvalid(describe(&e)))?;

    let msgs: Vec<Value> = messages
        .iter()
        .map(|m| {
            Value::from(BTreeMap::from([
                ("role".to_string(), Value::from(m.role.as_str())),
                ("content".to_string(), Value::from(m.content.as_str())),
            ]))
        })
        .collect();
    let ctx = Value::from(BTreeMap::from([
        ("messages".to_string(), Value::from(msgs)),
        (
            "add_generation_prompt".to_string(),
            Value::from(add_generation_prompt),
        ),
        ("bos_token".to_string(), Value::from(bos_token)),
        ("eos_token".to_string(), Value::from(eos_token)),
        ("tools".to_string(), Value::from(())),
    ]));

    let content_len: usize = messages
        .iter()
        .map(|m| m.content.len() + m.role.len())
        .sum();
    let mut out = CappedWriter {
        buf: Vec::new(),
        limit: content_len.saturating_mul(2).saturating_add(OUTPUT_SLACK),
        overflowed: false,
    };
    let result = tmpl.render_captured_to(ctx, &mut out);
    if out.overflowed {
        return Err(EngineError::ChatTemplateLimit("output size"));
    }
    if let Err(e) = result {
        return Err(map_render_error(&e));
    }
    // Template output is built from UTF-8 strings only; a failure here would be a minijinja bug.
    String::from_utf8(out.buf)
        .map_err(|_| EngineError::ChatTemplateRender("output is not UTF-8".into()))
}

/// Error kind and line only: render-time details can quote values (message contents).
fn map_render_error(e: &Error) -> EngineError {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(me) = err.downcast_ref::<Error>()
            && me.detail() == Some(RAISED)
        {
            return EngineError::ChatTemplateException {
                line: e.line().unwrap_or(0),
            };
        }
        cur = err.source();
    }
    match e.kind() {
        ErrorKind::OutOfFuel => EngineError::ChatTemplateLimit("fuel"),
        kind => {
            EngineError::ChatTemplateRender(format!("{kind:?} at line {}", e.line().unwrap_or(0)))
        }
    }
}

/// Kind, line and detail of a syntax error (the template comes from the model file, never
/// from users, so its parser messages are safe to show).
fn describe(e: &Error) -> String {
    format!(
        "{:?} at line {}: {}",
        e.kind(),
        e.line().unwrap_or(0),
        e.detail().unwrap_or("")
    )
}

/// `io::Write` that refuses to grow past `limit` bytes.
struct CappedWriter {
    buf: Vec<u8>,
    limit: usize,
    overflowed: bool,
}

impl Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len().saturating_add(data.len()) > self.limit {
            self.overflowed = true;
            return Err(std::io::Error::other("chat template output limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The strftime subset chat templates use, in UTC and the C locale: `%Y %y %m %d %e %b %h %B
/// %a %A %H %I %M %S %p %j %%`. `None` for any other conversion.
fn strftime(fmt: &str, unix: i64) -> Option<String> {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
    ];
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hour, min, sec) = (secs / 3600, secs / 60 % 60, secs % 60);
    let weekday = (days + 4).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let yday = days - days_from_civil(y, 1, 1) + 1;
    let month_name = MONTHS.get(m as usize - 1)?;
    let mut out = String::with_capacity(fmt.len() + 16);
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'Y' => out.push_str(&y.to_string()),
            'y' => out.push_str(&format!("{:02}", y.rem_euclid(100))),
            'm' => out.push_str(&format!("{m:02}")),
            'd' => out.push_str(&format!("{d:02}")),
            'e' => out.push_str(&format!("{d:2}")),
            'b' | 'h' => out.push_str(month_name.get(..3)?),
            'B' => out.push_str(month_name),
            'a' => out.push_str(DAYS[weekday].get(..3)?),
            'A' => out.push_str(DAYS[weekday]),
            'H' => out.push_str(&format!("{hour:02}")),
            'I' => out.push_str(&format!("{:02}", (hour + 11) % 12 + 1)),
            'M' => out.push_str(&format!("{min:02}")),
            'S' => out.push_str(&format!("{sec:02}")),
            'p' => out.push_str(if hour < 12 { "AM" } else { "PM" }),
            'j' => out.push_str(&format!("{yday:03}")),
            '%' => out.push('%'),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_known_dates() {
        // 2024-07-26 00:00:00 UTC, a Friday.
        let t = 1_721_952_000;
        assert_eq!(strftime("%d %b %Y", t).as_deref(), Some("26 Jul 2024"));
        assert_eq!(strftime("%B %d, %Y", t).as_deref(), Some("July 26, 2024"));
        assert_eq!(strftime("%A %a %j", t).as_deref(), Some("Friday Fri 208"));
        assert_eq!(
            strftime("%Y-%m-%d %H:%M:%S %p %I %%", t + 13 * 3600 + 62).as_deref(),
            Some("2024-07-26 13:01:02 PM 01 %")
        );
        assert_eq!(
            strftime("%Y-%m-%d %j", 0).as_deref(),
            Some("1970-01-01 001")
        );
        assert_eq!(
            strftime("%Y-%m-%d", 951_782_400).as_deref(),
            Some("2000-02-29")
        );
        assert_eq!(strftime("%Y-%m-%d", -1).as_deref(), Some("1969-12-31"));
        assert_eq!(strftime("%Q", t), None);
        assert_eq!(strftime("trailing %", t), None);
    }

    #[test]
    fn capped_writer_refuses_overflow() {
        let mut w = CappedWriter {
            buf: Vec::new(),
            limit: 4,
            overflowed: false,
        };
        assert!(w.write(b"abcd").is_ok());
        assert!(w.write(b"e").is_err());
        assert!(w.overflowed);
    }
}
