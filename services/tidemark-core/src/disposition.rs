//! What a loop does with an error: every error type of the pipeline (decode, flush, merge)
//! answers with one of these, so the loops match on a decision instead of on error variants.
//! A data problem of one warehouse table is not an error of the loop: it stops that table
//! (`tidemark_warehouse::stop::StopReason`).

/// What the pipeline does with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The record itself is bad: dead-letter it and go on.
    DeadLetter,
    /// Something outside the data failed (a peer went away): retry with backoff.
    Retry,
    /// Nothing can go on until the config or the code is fixed: stop with the error.
    Fatal,
}
