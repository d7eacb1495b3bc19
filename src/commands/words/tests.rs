use super::*;

#[test]
fn plain_lines_split_into_words_and_ip_is_replaced_per_word() {
    let t = Template::parse(
        "/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT",
        false,
    )
    .unwrap();
    assert_eq!(
        t.argv("192.0.2.7"),
        [
            "/sbin/iptables",
            "-A",
            "INPUT",
            "-s",
            "192.0.2.7",
            "-p",
            "tcp",
            "--dport",
            "22",
            "-j",
            "ACCEPT"
        ]
    );
    let t = Template::parse(r#"logger 'knock from %IP%' "a b" c\ d x=%IP%"#, false).unwrap();
    assert_eq!(
        t.argv("2001:db8::1"),
        [
            "logger",
            "knock from 2001:db8::1",
            "a b",
            "c d",
            "x=2001:db8::1"
        ]
    );
}

#[test]
fn shell_syntax_is_refused_with_its_column() {
    let cases = [
        ("a | b", "|", 3),
        ("a > /tmp/x", ">", 3),
        ("a >> /tmp/x", ">>", 3),
        ("a < x", "<", 3),
        ("a; b", ";", 2),
        ("a && b", "&&", 3),
        ("a || b", "||", 3),
        ("a &", "&", 3),
        ("echo $(id)", "$(", 6),
        ("echo $HOME", "$H", 6),
        ("echo `id`", "`", 6),
        ("echo \"$(id)\"", "$", 7),
        ("(a)", "(", 1),
        ("a # comment", "#", 3),
    ];
    for (line, token, column) in cases {
        match Template::parse(line, false) {
            Err(WordsError::NeedsShell {
                token: t,
                column: c,
            }) => {
                assert_eq!((t.as_str(), c), (token, column), "{line}")
            }
            other => panic!("{line}: {other:?}"),
        }
    }
}

#[test]
fn quoted_shell_characters_are_plain_text() {
    let t = Template::parse("printf '%s|%s;$(x)' a b", false).unwrap();
    assert_eq!(t.argv("x")[1], "%s|%s;$(x)");
}

#[test]
fn a_shell_line_runs_through_sh_only_when_allowed() {
    let t = Template::parse("echo %IP% | logger", true).unwrap();
    assert_eq!(
        t.argv("192.0.2.1"),
        ["/bin/sh", "-c", "echo 192.0.2.1 | logger"]
    );
    // A plain line stays words even when a shell is allowed.
    assert!(matches!(
        Template::parse("echo hi", true).unwrap(),
        Template::Words(_)
    ));
}

#[test]
fn unclosed_quotes_and_empty_lines_are_refused() {
    assert_eq!(
        Template::parse("echo 'a", true),
        Err(WordsError::Unclosed('\''))
    );
    assert_eq!(
        Template::parse("echo \"a", false),
        Err(WordsError::Unclosed('"'))
    );
    assert_eq!(Template::parse("   ", false), Err(WordsError::Empty));
}
