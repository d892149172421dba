//! Read-only queries behind the web dashboard (`stuffed serve`).
