use super::*;

fn dev(tags: &[String]) -> Subject<'_> {
    Subject {
        id: "pc-1",
        kind: "outpost",
        host: "pc1",
        os: "linux",
        os_version: "6.1.0",
        arch: "x86_64",
        agent_version: "0.2.9",
        address: "192.0.2.7",
        free: Some(5 << 30),
        age: Some(3 * 86400),
        tags,
    }
}

fn eval(s: &str) -> bool {
    let tags = ["site:lyon".to_string(), "kiosk".to_string()];
    Expr::parse(s).unwrap_or_else(|e| panic!("{s}: {e}")).matches(&dev(&tags))
}

#[test]
fn comparisons_and_connectives() {
    for yes in [
        r#"os = "linux" and tag = "site:lyon""#,
        r#"agent_version < "0.3""#,
        r#"agent_version > "0.2.10" or agent_version = "0.2.9""#,
        r#"agent_version >= "0.2.9" and agent_version <= "0.2.9""#,
        "last_contact > 2d",
        "last_contact < 1w",
        "free >= 5G and free < 5121M",
        r#"not tag = "paris""#,
        r#"tag != "paris""#,
        r#"(os = "windows" or os = "LINUX") and not (arch = "aarch64")"#,
        r#"os_version > "6.0.12""#,
        r#"id = "pc-1" and host != "pc2" and kind = "outpost" and address = "192.0.2.7""#,
    ] {
        assert!(eval(yes), "{yes}");
    }
    for no in [
        r#"os = "linux" and tag = "site:paris""#,
        r#"agent_version < "0.2.10" and agent_version > "0.3""#,
        "last_contact > 7d",
        r#"tag = "kiosk" and not tag = "site:lyon""#,
        r#"os = "linux" and (arch = "arm" or arch = "aarch64")"#,
    ] {
        assert!(!eval(no), "{no}");
    }
}

#[test]
fn and_binds_tighter_than_or() {
    // false and false or true = (false and false) or true = true
    assert!(eval(r#"os = "x" and os = "y" or tag = "kiosk""#));
    assert!(!eval(r#"os = "x" and (os = "y" or tag = "kiosk")"#));
}

#[test]
fn unknown_values_compare_false_and_never_seen_is_oldest() {
    let d = Subject { free: None, age: None, ..Subject::default() };
    assert!(!Expr::parse("free > 0").unwrap().matches(&d));
    assert!(!Expr::parse("free < 1T").unwrap().matches(&d));
    assert!(Expr::parse("last_contact > 100w").unwrap().matches(&d));
}

#[test]
fn versions_compare_as_numbers() {
    assert_eq!(version_cmp("0.10", "0.9"), Ordering::Greater);
    assert_eq!(version_cmp("1.2", "1.2.0"), Ordering::Less);
    assert_eq!(version_cmp("01.2", "1.2"), Ordering::Equal);
    assert_eq!(version_cmp("1.2-rc1", "1.2-rc2"), Ordering::Less);
}

#[test]
fn bad_input_gives_the_byte_and_the_reason() {
    let err = |s: &str| Expr::parse(s).unwrap_err();
    assert_eq!(err(r#"os = "linux" and"#), ExprError { at: 16, kind: ErrorKind::Expected("a field, 'not' or '('") });
    assert_eq!(err("colour = \"red\"").kind, ErrorKind::UnknownField("colour".into()));
    assert_eq!(err("os \"linux\"").at, 3);
    assert_eq!(err("os = linux").kind, ErrorKind::BadValue("a \"quoted string\""));
    assert_eq!(err("os = \"linux").kind, ErrorKind::UnclosedString);
    assert_eq!(err("os = \"a\" os = \"b\"").at, 9);
    assert_eq!(err("tag < \"a\"").at, 4);
    assert!(matches!(err("last_contact > 7y").kind, ErrorKind::BadValue(_)));
    assert!(matches!(err("last_contact > 7").kind, ErrorKind::BadValue(_)));
    assert!(matches!(err("free > \"1\"").kind, ErrorKind::BadValue(_)));
    assert!(matches!(err("free > 99999999999999999999").kind, ErrorKind::BadValue(_)));
    assert!(matches!(err("free > 99999999999T").kind, ErrorKind::BadValue(_)));
    assert_eq!(err("os ! \"x\"").kind, ErrorKind::BadChar('!'));
    assert_eq!(err("os = \"x\" & os = \"y\"").kind, ErrorKind::BadChar('&'));
    assert_eq!(err("(os = \"x\"").kind, ErrorKind::Expected("')'"));
    assert_eq!(err("é = \"x\""), ExprError { at: 0, kind: ErrorKind::BadChar('é') });
    assert_eq!(err("").kind, ErrorKind::Expected("a field, 'not' or '('"));
    assert_eq!(err(&"x".repeat(MAX_LEN + 1)).kind, ErrorKind::TooLong);
    let deep = format!("{}os = \"x\"{}", "(".repeat(MAX_DEPTH + 1), ")".repeat(MAX_DEPTH + 1));
    assert_eq!(err(&deep).kind, ErrorKind::TooDeep);
    assert_eq!(err(&format!("{}os = \"x\"", "not ".repeat(MAX_DEPTH + 1))).kind, ErrorKind::TooDeep);
    let ok = format!("{}os = \"x\"{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert!(Expr::parse(&ok).is_ok());
    assert!(err("os = \"a\" )").to_string().starts_with("at byte 9: expected 'and', 'or' or the end"));
}
