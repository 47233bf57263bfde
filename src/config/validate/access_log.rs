//! The `access_log:` section: where finished connections are logged, and how.

use std::path::PathBuf;

use serde_yaml::Value;

use super::fields::Fields;
use crate::config::model::{AccessLogConfig, AccessLogFormat, AccessLogTarget};
use crate::config::raw::RawAccessLog;
use crate::config::value::text::string;
use crate::config::value::word::Word;
use crate::config::value::Bad;

pub(super) fn access_log(log: &RawAccessLog, mut f: Fields) -> Option<AccessLogConfig> {
    let target = f.need(
        "path",
        &log.path,
        "add path: stderr, or a file such as /var/log/spliced/access.log",
        target,
    );
    let format = f.or("format", &log.format, AccessLogFormat::Json, FORMAT);
    Some(AccessLogConfig {
        target: target?,
        format: format?,
    })
}

const FORMAT: Word<'static, AccessLogFormat> = Word {
    all: &AccessLogFormat::ALL,
    name: AccessLogFormat::as_str,
    what: "access log format",
};

/// `path:`: `stderr` or a file.
fn target(value: &Value) -> Result<AccessLogTarget, Bad> {
    let text = string(value, "stderr or a file path")?;
    match text.trim() {
        "" => Err(Bad::new(
            Some(text),
            "is an empty path",
            "write stderr, or a file such as /var/log/spliced/access.log",
        )),
        "stderr" => Ok(AccessLogTarget::Stderr),
        file => Ok(AccessLogTarget::File(PathBuf::from(file))),
    }
}
