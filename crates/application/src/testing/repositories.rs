//! In-memory repository fakes (being written).
