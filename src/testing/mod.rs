//! Test support shared by the unit tests, the integration tests, the crash
//! tests and the fuzz targets: a trivially simple reference model and
//! generators of sample data. Not part of the stable API.

pub mod conflict;
pub mod crash;
pub mod fs;
pub mod fuzz;
pub mod model;
pub mod sample;
pub mod workload;
