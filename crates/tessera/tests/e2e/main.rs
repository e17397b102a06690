//! End-to-end tests: the real server on a loopback port, driven over HTTP.
//! One test binary for the whole workspace (linking is the slow part).

mod account_pages;
mod api;
mod attacks;
mod authorize;
mod backchannel;
mod binary;
mod browser;
mod cli;
mod crash;
mod failover;
mod hostile;
mod instances;
mod keys;
mod lifecycle;
mod mailbox;
mod migrate;
mod oauth;
mod oidc_browser;
mod openapi;
mod ops;
mod pgcluster;
mod pressure;
mod protect;
mod rotation;
mod skew;
mod soak;
mod support;
mod verifier;
