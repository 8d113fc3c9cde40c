//! Test harness shared by Roost's black-box, interop and differential tests:
//! a raw-frame client ([`raw`]) and servers to point it at ([`servers`]).

pub mod ensemble;
pub mod history;
pub mod proxy;
pub mod raw;
pub mod requests;
pub mod rng;
pub mod servers;
