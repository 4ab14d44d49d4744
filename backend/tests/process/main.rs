//! Tests of the real `imds-console` binary as a process: crash safety (killed at each point of a start)
//! and HTTPS with --tls-cert/--tls-key.

mod crash;
mod tls;
