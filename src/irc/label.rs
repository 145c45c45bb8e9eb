//! labeled-response without I/O: a command's whole answer tagged with the client's `label`:
//! `ACK` when there is none, the tag on the one line there is, or a `labeled-response`
//! batch around several.

use std::fmt::Write as _;

use super::message::escape_into;

/// Wraps `answer` (lines with CR LF) for `label`; `reference` names the batch if one is
/// needed. Lines already in a batch (a history block) stay in theirs; that batch's own
/// `BATCH` lines go in the labeled one.
pub fn labeled(answer: &str, label: &str, server: &str, reference: &str) -> String {
    let mut tag = String::from("label=");
    escape_into(&mut tag, label);
    let lines: Vec<&str> = answer.split_inclusive("\r\n").collect();
    let mut out = String::with_capacity(answer.len() + 64);
    match lines.as_slice() {
        [] => {
            let _ = write!(out, "@{tag} :{server} ACK\r\n");
        }
        [line] => with_tag(&mut out, line, &tag),
        _ => {
            let _ = write!(
                out,
                "@{tag} :{server} BATCH +{reference} labeled-response\r\n"
            );
            let batch = format!("batch={reference}");
            for line in lines {
                if has_batch_tag(line) {
                    out.push_str(line);
                } else {
                    with_tag(&mut out, line, &batch);
                }
            }
            let _ = write!(out, ":{server} BATCH -{reference}\r\n");
        }
    }
    out
}

/// Like [`labeled`], for a message a client sent to itself with echo-message: `answer` is
/// then the message as received followed by its echo, the same lines twice; the copy as
/// received goes out as it is and only the echo answers the label. Any other answer is
/// labeled whole.
pub fn labeled_to_self(answer: &str, label: &str, server: &str, reference: &str) -> String {
    let lines: Vec<&str> = answer.split_inclusive("\r\n").collect();
    let half = lines.len() / 2;
    if half == 0 || !lines.len().is_multiple_of(2) || lines[..half] != lines[half..] {
        return labeled(answer, label, server, reference);
    }
    let received = lines[..half].concat();
    received + &labeled(&lines[half..].concat(), label, server, reference)
}

/// `line` with `tag` first among its tags.
fn with_tag(out: &mut String, line: &str, tag: &str) {
    match line.strip_prefix('@') {
        Some(rest) => {
            let _ = write!(out, "@{tag};{rest}");
        }
        None => {
            let _ = write!(out, "@{tag} {line}");
        }
    }
}

/// True when the line's tags put it in a batch.
fn has_batch_tag(line: &str) -> bool {
    line.strip_prefix('@')
        .and_then(|rest| rest.split(' ').next())
        .is_some_and(|tags| tags.split(';').any(|t| t.starts_with("batch=")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_to_oneself_labels_only_the_echo() {
        let copy = ":me!~me@srv PRIVMSG me :hi\r\n";
        assert_eq!(
            labeled_to_self(&copy.repeat(2), "L", "srv", "lr1"),
            format!("{copy}@label=L {copy}")
        );
        let error = ":srv 401 me x :No such nick/channel\r\n";
        assert_eq!(
            labeled_to_self(error, "L", "srv", "lr1"),
            format!("@label=L {error}")
        );
    }

    #[test]
    fn no_answer_is_an_ack() {
        assert_eq!(
            labeled("", "a b", "srv", "lr1"),
            "@label=a\\sb :srv ACK\r\n"
        );
    }

    #[test]
    fn one_line_gets_the_label_among_its_tags() {
        assert_eq!(
            labeled("@time=x :srv PONG srv :t\r\n", "7", "srv", "lr1"),
            "@label=7;time=x :srv PONG srv :t\r\n"
        );
        assert_eq!(
            labeled(":srv 421 me X :Unknown command\r\n", "7", "srv", "lr1"),
            "@label=7 :srv 421 me X :Unknown command\r\n"
        );
    }

    #[test]
    fn several_lines_go_in_a_batch_and_inner_batches_keep_theirs() {
        let answer = ":me JOIN #a\r\n:srv BATCH +h1 chathistory #a\r\n@batch=h1 :x PRIVMSG #a :hi\r\n:srv BATCH -h1\r\n";
        assert_eq!(
            labeled(answer, "L", "srv", "lr1"),
            "@label=L :srv BATCH +lr1 labeled-response\r\n\
             @batch=lr1 :me JOIN #a\r\n\
             @batch=lr1 :srv BATCH +h1 chathistory #a\r\n\
             @batch=h1 :x PRIVMSG #a :hi\r\n\
             @batch=lr1 :srv BATCH -h1\r\n\
             :srv BATCH -lr1\r\n"
        );
    }
}
