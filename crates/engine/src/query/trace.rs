//! Debug traces grouped under the user input they answer.

use crate::store::{MessageRecord, TraceRecord};

/// The actions the bot took for one user input.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceGroup {
    /// The user message; `None` for events before the first user input.
    pub input: Option<MessageRecord>,
    pub events: Vec<TraceRecord>,
}

impl TraceGroup {
    /// Sum of the events' durations.
    pub fn total_duration_ms(&self) -> f64 {
        // Folding from +0.0: an empty f64 sum is -0.0, which serialises as "-0.0".
        self.events
            .iter()
            .filter_map(|e| e.duration_ms)
            .fold(0.0, |total, ms| total + ms)
    }
}

/// Groups `traces` (in time order) under user messages of `messages` (in conversation order).
///
/// An event that names a message belongs to that message if it is a user
/// message, else to the latest user message up to it; an event that names none
/// (or an unknown one) belongs to the latest user message at or before its time.
pub fn group_traces(messages: &[MessageRecord], traces: Vec<TraceRecord>) -> Vec<TraceGroup> {
    let inputs: Vec<usize> = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| m.role == "user")
        .map(|(i, _)| i)
        .collect();
    let mut groups: Vec<TraceGroup> = Vec::with_capacity(inputs.len() + 1);
    groups.push(TraceGroup {
        input: None,
        events: Vec::new(),
    });
    groups.extend(inputs.iter().map(|&i| TraceGroup {
        input: Some(messages[i].clone()),
        events: Vec::new(),
    }));
    // Group number of the latest user input at or before message position `p` (0 = none).
    let group_of_position = |p: usize| inputs.partition_point(|&i| i <= p);
    for event in traces {
        let named = event
            .message_id
            .as_deref()
            .and_then(|id| messages.iter().position(|m| m.id == id));
        let group = match named {
            Some(position) => group_of_position(position),
            None => {
                let at_or_before = messages.partition_point(|m| m.timestamp <= event.timestamp);
                match at_or_before {
                    0 => 0,
                    n => group_of_position(n - 1),
                }
            }
        };
        groups[group].events.push(event);
    }
    if groups[0].events.is_empty() {
        groups.remove(0);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, role: &str, ts: i64) -> MessageRecord {
        MessageRecord {
            seq: ts as u64,
            id: id.into(),
            conversation_id: 1,
            role: role.into(),
            text: String::new(),
            timestamp: ts,
            flow: None,
            step: None,
            node_id: None,
            node_type: None,
            node_name: None,
            intent: None,
            confidence: None,
            unidentified: false,
            flow_completed: false,
            metadata: None,
            lang: None,
        }
    }

    fn event(action: &str, ts: i64, message_id: Option<&str>) -> TraceRecord {
        TraceRecord {
            timestamp: ts,
            message_id: message_id.map(String::from),
            action: action.into(),
            detail: None,
            duration_ms: Some(2.0),
            level: "info".into(),
        }
    }

    #[test]
    fn events_go_to_the_named_input_or_the_latest_before_them() {
        let messages = vec![
            message("u1", "user", 10),
            message("b1", "bot", 20),
            message("u2", "user", 30),
            message("b2", "bot", 40),
        ];
        let traces = vec![
            event("early", 5, None),
            event("nlu", 11, None),
            event("reply", 19, Some("b1")),
            event("late-for-u1", 35, Some("u1")),
            event("nlu2", 31, None),
        ];
        let groups = group_traces(&messages, traces);
        let names: Vec<(Option<&str>, Vec<&str>)> = groups
            .iter()
            .map(|g| {
                (
                    g.input.as_ref().map(|m| m.id.as_str()),
                    g.events.iter().map(|e| e.action.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            names,
            vec![
                (None, vec!["early"]),
                (Some("u1"), vec!["nlu", "reply", "late-for-u1"]),
                (Some("u2"), vec!["nlu2"]),
            ]
        );
        assert_eq!(groups[1].total_duration_ms(), 6.0);
    }
}
