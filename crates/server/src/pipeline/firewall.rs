//! DNS Firewall beyond the question: the names of an answer's CNAME and
//! DNAME chain, checked as Route 53 Resolver's FirewallDomainRedirectionAction
//! says, on every answer served — local, from the cache or fresh from
//! upstream — so a list change applies to cached answers at once; and the
//! per-rule counters.

use signpost_rules::{Client, Decision, FirewallAction, FirewallMatch, RuleSet};
use signpost_wire::{Buffer, Message, Name, RecordType};

use super::{Pipeline, Purpose, QueryFacts, Step};
use crate::metrics::DecisionIndex;
use crate::querylog::{Trace, TraceFirewall};

/// A forwarded query whose answer the firewall checks when it arrives:
/// who asked and the query itself (the answer is rewritten as a block).
pub(crate) struct ChainCheck {
    pub(super) client: Client,
    pub(super) query: Box<[u8]>,
}

/// The label a rule's counter carries for what it did.
fn action_label(hit: &FirewallMatch<'_>) -> &'static str {
    if hit.failed { "FAIL_CLOSED" } else { hit.action.as_str() }
}

impl Pipeline {
    /// Count the firewall rule the question met, if any.
    pub(super) fn count_firewall(
        &self,
        rules: &RuleSet,
        client: &Client,
        name: &Name<'_>,
        qtype: RecordType,
        purpose: Purpose,
    ) {
        if !rules.has_firewall() {
            return;
        }
        if let Some(hit) = rules.firewall_hit(client, name, qtype) {
            self.counters(purpose).firewall_match(hit.group, hit.rule, action_label(&hit));
        }
    }

    /// Check the redirection chain of the response written at
    /// `out[start..]`; when a rule blocks a name of it, replace the
    /// response with the block and return its step and the rule (for
    /// [`chain_blocked`]).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn firewall_chain(
        &self,
        rules: &RuleSet,
        client: &Client,
        facts: &QueryFacts<'_>,
        start: usize,
        limit: usize,
        out: &mut impl Buffer,
        purpose: Purpose,
    ) -> Option<(Step, TraceFirewall)> {
        // Checked first: most rule sets have no firewall, and a cache hit
        // would otherwise parse its answer for nothing.
        if !rules.has_firewall() {
            return None;
        }
        let (decision, rule) = {
            let response = Message::parse(out.as_slice().get(start..)?).ok()?;
            if response.header().ancount == 0 {
                return None;
            }
            let (decision, hit) = rules.firewall_redirection(client, &response)?;
            let allowed = matches!(hit.action, FirewallAction::Allow | FirewallAction::Alert) && !hit.failed;
            if allowed {
                return None;
            }
            self.counters(purpose).firewall_match(hit.group, hit.rule, action_label(&hit));
            let rule = TraceFirewall {
                group: hit.group.to_string(),
                rule: hit.rule.to_string(),
                list: hit.list.to_string(),
                action: hit.action.as_str().to_string(),
            };
            (decision, rule)
        };
        out.truncate(start);
        let question = facts.message.questions().next()?.ok()?;
        let counters = self.counters(purpose);
        let step = match decision {
            Decision::Block(block) => {
                counters.decision(DecisionIndex::Blocked);
                self.block_response(facts, &question.name(), question.qtype(), &block, limit, out, purpose)
            }
            Decision::Local(answer) => {
                counters.decision(DecisionIndex::Local);
                self.local_response(facts, &question.name(), &answer, limit, out, purpose)
            }
            // A firewall decision is a block or a local answer (OVERRIDE).
            Decision::Forward(_) => return None,
        };
        Some((step, rule))
    }
}

/// Mark `trace` with a block found on the answer's redirection chain.
pub(super) fn chain_blocked(trace: Option<&mut Trace>, rule: TraceFirewall) {
    if let Some(trace) = trace {
        trace.decision = "block".into();
        trace.notes.push("DNS Firewall blocked a name of the answer's redirection chain".into());
        trace.firewall_chain = Some(rule);
    }
}
