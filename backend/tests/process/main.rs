//! Tests of the real `imds-console` binary as a process: crash safety (killed at each point of a start),
//! JSON logs with request IDs, boto3 against the standalone sandbox,
//! HTTPS with --tls-cert/--tls-key, and the files it leaves on disk.

mod aws;
mod boto3;
mod config;
mod crash;
mod embedded;
mod files;
mod logs;
mod tls;
