//! End-to-end tests: the real `spliced` binary, real backends, real clients,
//! all on loopback. One test binary (STYLE.md rule 15).

mod accesslog;
mod admin;
mod autoscaling;
mod balancing;
mod config_check;
mod dashboard;
mod deploy;
mod engines;
mod hardening;
mod harness;
mod health;
mod http;
mod http_backend;
mod http_features;
mod https;
mod idle;
mod in_process;
mod lifecycle;
mod limits;
mod prometheus;
mod proxy_protocol;
mod relay;
mod reload;
mod systemd;
mod tls;
