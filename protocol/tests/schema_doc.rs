//! docs/results-schema.md carries a field reference generated from the protocol's types: this
//! test fails when the two drift. `STUFFED_BLESS=1` rewrites the section from the types.
use stuffed_protocol::schema::{field_reference, BEGIN, END};

#[test]
fn results_schema_doc_matches_the_types() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/results-schema.md");
    let doc = std::fs::read_to_string(&path).expect("docs/results-schema.md");
    let (Some(a), Some(b)) = (doc.find(BEGIN), doc.find(END)) else {
        panic!("{}: no generated section ({BEGIN} ... {END})", path.display())
    };
    let current = &doc[a..b + END.len() + 1];
    let fresh = field_reference();
    if current != fresh {
        if std::env::var_os("STUFFED_BLESS").is_some() {
            std::fs::write(&path, doc.replacen(current, &fresh, 1)).expect("write the doc");
            return;
        }
        panic!(
            "{} drifted from the protocol types; run `STUFFED_BLESS=1 cargo test -p stuffed-protocol` and review.\nexpected:\n{fresh}",
            path.display()
        );
    }
}
