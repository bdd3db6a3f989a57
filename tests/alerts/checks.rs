//! Reading `GetAlertStatus` (a channel, a rule, a status once ready) and
//! checking what an alert carries: no links, the latest messages, every
//! recipient.

use auditlog_client::{Client, pb};

use crate::alerts::setup::{FROM, TO};
use crate::common::endpoints::Mail;
use crate::common::wait_until;

pub(crate) fn channel(status: &pb::GetAlertStatusResponse, name: &str) -> pb::AlertChannelStatus {
    status
        .channels
        .iter()
        .find(|c| c.channel == name)
        .unwrap_or_else(|| panic!("no channel {name} in {status:?}"))
        .clone()
}

pub(crate) fn rule_status(status: &pb::GetAlertStatusResponse, name: &str) -> pb::AlertRuleStatus {
    status
        .rules
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no rule {name} in {status:?}"))
        .clone()
}

/// Waits until `GetAlertStatus` satisfies `ready`; returns that status.
pub(crate) async fn status_when(
    client: &Client,
    what: &str,
    ready: impl Fn(&pb::GetAlertStatusResponse) -> bool,
) -> pb::GetAlertStatusResponse {
    let ready = &ready;
    wait_until(what, || async move {
        let status = client.alert_status().await.unwrap();
        if ready(&status) {
            Ok(status)
        } else {
            Err(format!("{status:?}"))
        }
    })
    .await
}

/// Asserts `text` holds no link of any kind.
pub(crate) fn assert_no_links(text: &str) {
    for link in ["http://", "https://", "www.", "<a ", "href", "mailto:"] {
        assert!(!text.contains(link), "{link:?} in {text}");
    }
}

/// Checks the latest messages an alert carries: at least one, newest last,
/// each the message of one of `errors` (their seqs and texts), consecutive
/// and ending with the newest error.
pub(crate) fn assert_latest_messages(messages: &[String], errors: &[(u64, String)]) {
    assert!(!messages.is_empty(), "no messages");
    assert!(messages.len() <= errors.len(), "{messages:?}");
    let tail = &errors[errors.len() - messages.len()..];
    for (message, (seq, text)) in messages.iter().zip(tail) {
        assert!(
            message.contains(&format!("seq {seq}")) && message.contains(text.as_str()),
            "expected seq {seq} ({text}) in {message:?}; all: {messages:?}"
        );
    }
}

/// The mail's recipients as its header and its envelope name them.
pub(crate) fn assert_addressed_to_everyone(mail: &Mail) {
    let mut envelope = mail.rcpt_to.clone();
    envelope.sort();
    let mut expected: Vec<String> = TO.iter().map(|t| (*t).to_owned()).collect();
    expected.sort();
    assert_eq!(envelope, expected, "envelope recipients");
    assert_eq!(mail.mail_from, FROM, "envelope sender");
    let to = mail.header("To");
    for t in TO {
        assert!(to.contains(t), "{t} not in To: {to}");
    }
    assert!(mail.header("From").contains(FROM), "{}", mail.data);
}
