//! The `access_log:` section: where finished connections are logged, and how.

// WHY: moved here whole from validate.rs; each section gets its own imports
// when its reads move to the field reader.
#[allow(unused_imports)]
use super::*;

pub(super) fn access_log_section(
    log: &RawAccessLog,
    path: &YamlPath,
    errors: &mut Collector,
) -> Option<AccessLogConfig> {
    let target_path = path.key("path");
    let target = required(
        log.path.as_ref(),
        &target_path,
        "add path: stderr, or a file such as /var/log/spliced/access.log",
        errors,
    )
    .and_then(|v| string(v, &target_path, "stderr or a file path", errors))
    .and_then(|text| match text.trim() {
        "" => {
            errors.push(
                &target_path,
                Some(text),
                "is an empty path",
                "write stderr, or a file such as /var/log/spliced/access.log",
            );
            None
        }
        "stderr" => Some(AccessLogTarget::Stderr),
        file => Some(AccessLogTarget::File(PathBuf::from(file))),
    });
    let format = match log.format.as_ref() {
        None => Some(AccessLogFormat::Json),
        Some(value) => {
            let names = AccessLogFormat::ALL.map(AccessLogFormat::as_str);
            keyword(
                value,
                &path.key("format"),
                &names,
                "access log format",
                errors,
            )
            .and_then(|word| {
                AccessLogFormat::ALL
                    .into_iter()
                    .find(|f| f.as_str() == word)
            })
        }
    };
    Some(AccessLogConfig {
        target: target?,
        format: format?,
    })
}
