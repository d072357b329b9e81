//! Assertions on the queries a Signpost server recorded that read as the
//! test means them: `dns.expect("api.svc.test").qtype(RecordType::A).once()`.

use std::fmt::{self, Write as _};
use std::time::Duration;

use signpost_server::{RecordedQuery, TestLayer};
use signpost_wire::{NameBuf, Rcode, RecordType};

use crate::{Error, Transport};

/// Which recorded queries a test is talking about, and what it expects of
/// them: built from a [`crate::FakeDns`] (`expect`, `expect_any`) or any
/// [`TestLayer`] ([`QueryExpectation::new`]), narrowed by name, type,
/// transport, rcode, decision and cache hit, then checked — at once
/// ([`QueryExpectation::times`], [`QueryExpectation::once`],
/// [`QueryExpectation::never`], [`QueryExpectation::at_least`]) or by
/// waiting ([`QueryExpectation::wait`]). A failed check panics with what
/// was expected and every query recorded.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), signpost_testkit::Error> {
/// use std::time::Duration;
/// use signpost_testkit::{FakeDns, Transport, ask};
/// use signpost_wire::{Rcode, RecordType};
///
/// let dns = FakeDns::builder().record("api.svc.test. IN A 10.0.0.1").start().await?;
/// ask(dns.udp_addr(), "api.svc.test", RecordType::A).await;
/// ask(dns.udp_addr(), "gone.svc.test", RecordType::A).await;
/// dns.expect("api.svc.test").qtype(RecordType::A).transport(Transport::Udp).rcode(Rcode::NOERROR).once();
/// dns.expect("gone.svc.test").rcode(Rcode::NXDOMAIN).once();
/// dns.expect_any().qtype(RecordType::AAAA).never();
/// let answered = dns.expect("api.svc.test").finished().wait(Duration::from_secs(5)).await?;
/// assert_eq!(answered.answers, ["api.svc.test. 60 IN A 10.0.0.1"]);
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use = "an expectation checks nothing until times, once, never, at_least or wait is called"]
pub struct QueryExpectation<'a> {
    layer: &'a TestLayer,
    name: Option<Result<NameBuf, String>>,
    qtype: Option<RecordType>,
    transport: Option<Transport>,
    rcode: Option<Rcode>,
    decision: Option<String>,
    cache_hit: Option<bool>,
    finished: bool,
}

impl<'a> QueryExpectation<'a> {
    /// Every query `layer` recorded.
    pub fn new(layer: &'a TestLayer) -> Self {
        Self {
            layer,
            name: None,
            qtype: None,
            transport: None,
            rcode: None,
            decision: None,
            cache_hit: None,
            finished: false,
        }
    }

    /// Only questions for `name` (any case, final dot or not). A name that
    /// is not valid matches nothing and the check says why.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.parse::<NameBuf>().map_err(|error| format!("{name:?} is not a valid name: {error}")));
        self
    }

    /// Only questions of this type.
    pub fn qtype(mut self, qtype: RecordType) -> Self {
        self.qtype = Some(qtype);
        self
    }

    /// Only queries that came over this transport.
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Only queries answered with this rcode (so finished ones).
    pub fn rcode(mut self, rcode: Rcode) -> Self {
        self.rcode = Some(rcode);
        self
    }

    /// Only queries whose decision was this (`local`, `block`, `forward`,
    /// `stale`, `servfail`, `fault`, `drop`, `close`).
    pub fn decision(mut self, decision: &str) -> Self {
        self.decision = Some(decision.to_owned());
        self
    }

    /// Only queries answered from the cache (`true`) or not (`false`).
    pub fn cache_hit(mut self, hit: bool) -> Self {
        self.cache_hit = Some(hit);
        self
    }

    /// Only queries the server is done with (answered, dropped or closed).
    pub fn finished(mut self) -> Self {
        self.finished = true;
        self
    }

    /// Whether `query` is one of those meant.
    pub fn matches(&self, query: &RecordedQuery) -> bool {
        let name = match &self.name {
            None => true,
            Some(Ok(name)) => query.name == *name,
            Some(Err(_)) => false,
        };
        name && self.qtype.is_none_or(|qtype| query.qtype == qtype)
            && self.transport.is_none_or(|transport| query.transport == transport)
            && self.rcode.is_none_or(|rcode| query.rcode == Some(rcode))
            && self.decision.as_deref().is_none_or(|decision| query.decision == decision)
            && self.cache_hit.is_none_or(|hit| query.finished && query.cache_hit == hit)
            && (!self.finished || query.finished)
    }

    /// The recorded queries meant, in the order they arrived.
    pub fn queries(&self) -> Vec<RecordedQuery> {
        self.layer.recorded_queries().into_iter().filter(|query| self.matches(query)).collect()
    }

    /// How many recorded queries are meant.
    pub fn count(&self) -> usize {
        self.queries().len()
    }

    /// Assert exactly `count` such queries were recorded.
    ///
    /// # Panics
    ///
    /// When another number was, listing every query recorded.
    #[track_caller]
    pub fn times(self, count: usize) {
        self.check(|found| found == count, &format!("exactly {count}"));
    }

    /// Assert exactly one such query was recorded.
    ///
    /// # Panics
    ///
    /// When another number was, listing every query recorded.
    #[track_caller]
    pub fn once(self) {
        self.times(1);
    }

    /// Assert no such query was recorded.
    ///
    /// # Panics
    ///
    /// When one was, listing every query recorded.
    #[track_caller]
    pub fn never(self) {
        self.times(0);
    }

    /// Assert at least `count` such queries were recorded.
    ///
    /// # Panics
    ///
    /// When fewer were, listing every query recorded.
    #[track_caller]
    pub fn at_least(self, count: usize) {
        self.check(|found| found >= count, &format!("at least {count}"));
    }

    /// Wait until such a query is recorded, at most `timeout`; the first
    /// one. With [`QueryExpectation::finished`] (or an rcode), wait for its
    /// answer too.
    pub async fn wait(self, timeout: Duration) -> Result<RecordedQuery, Error> {
        if let Some(Err(problem)) = &self.name {
            return Err(Error::Timeout { what: self.to_string(), waited: Duration::ZERO, seen: problem.clone() });
        }
        match self.layer.wait_for(timeout, |query| self.matches(query)).await {
            Some(query) => Ok(query),
            None => Err(Error::Timeout {
                what: self.to_string(),
                waited: timeout,
                seen: describe_queries(&self.layer.recorded_queries()),
            }),
        }
    }

    #[track_caller]
    fn check(&self, holds: impl Fn(usize) -> bool, wanted: &str) {
        if let Some(Err(problem)) = &self.name {
            panic!("{problem}");
        }
        let recorded = self.layer.recorded_queries();
        let found = recorded.iter().filter(|query| self.matches(query)).count();
        if !holds(found) {
            panic!("expected {wanted} {self}, found {found}; {}", describe_queries(&recorded));
        }
    }
}

impl fmt::Display for QueryExpectation<'_> {
    /// "queries for api.svc.test. A over UDP answered NOERROR".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("queries")?;
        match &self.name {
            Some(Ok(name)) => write!(f, " for {name}")?,
            Some(Err(problem)) => write!(f, " for a name that is not valid ({problem})")?,
            None => {}
        }
        if let Some(qtype) = self.qtype {
            write!(f, " {qtype}")?;
        }
        if let Some(transport) = self.transport {
            write!(f, " over {}", transport.as_str().to_ascii_uppercase())?;
        }
        if let Some(rcode) = self.rcode {
            write!(f, " answered {rcode}")?;
        }
        if let Some(decision) = &self.decision {
            write!(f, " with decision {decision}")?;
        }
        match self.cache_hit {
            Some(true) => f.write_str(" from the cache")?,
            Some(false) => f.write_str(" not from the cache")?,
            None => {}
        }
        if self.finished && self.rcode.is_none() {
            f.write_str(" (finished)")?;
        }
        Ok(())
    }
}

/// Every recorded query, one per line, for failure messages.
pub(crate) fn describe_queries(queries: &[RecordedQuery]) -> String {
    if queries.is_empty() {
        return "no query was recorded".to_owned();
    }
    let mut text = format!("{} recorded:", queries.len());
    for query in queries {
        let _ = write!(text, "\n  {}", describe_query(query));
    }
    text
}

/// One recorded query: `api.svc.test. A over UDP from 127.0.0.1:40000: NOERROR (local, zone svc.test.)`.
pub fn describe_query(query: &RecordedQuery) -> String {
    let transport = query.transport.as_str().to_ascii_uppercase();
    let outcome = match (query.finished, query.rcode) {
        (false, _) => "not answered yet".to_owned(),
        (true, Some(rcode)) => rcode.to_string(),
        (true, None) => "no answer".to_owned(),
    };
    let mut text = format!("{} {} over {transport} from {}: {outcome}", query.name, query.qtype, query.client);
    if query.finished {
        let mut why = vec![query.decision.clone()];
        if !query.matched.is_empty() {
            why.push(query.matched.clone());
        }
        if query.cache_hit {
            why.push("cache hit".to_owned());
        }
        let _ = write!(text, " ({})", why.join(", "));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FakeDns, ask};

    async fn asked_once() -> FakeDns {
        let dns = FakeDns::builder().record("api.svc.test. IN A 10.0.0.1").start().await.unwrap();
        ask(dns.udp_addr(), "api.svc.test", RecordType::A).await.unwrap();
        dns
    }

    #[tokio::test]
    async fn expectations_narrow_and_count() {
        let dns = asked_once().await;
        dns.expect("API.svc.test.").qtype(RecordType::A).transport(Transport::Udp).rcode(Rcode::NOERROR).once();
        dns.expect("api.svc.test").decision("local").cache_hit(false).finished().times(1);
        dns.expect("api.svc.test").transport(Transport::Tcp).never();
        dns.expect_any().at_least(1);
        assert_eq!(dns.expect("api.svc.test").qtype(RecordType::AAAA).count(), 0);
        let expectation =
            dns.expect("api.svc.test").qtype(RecordType::A).transport(Transport::Udp).rcode(Rcode::NOERROR);
        assert_eq!(expectation.to_string(), "queries for api.svc.test. A over UDP answered NOERROR");
        let line = describe_query(&expectation.queries()[0]);
        assert!(
            line.starts_with("api.svc.test. A over UDP from 127.0.0.1:")
                && line.ends_with(": NOERROR (local, zone api.svc.test.)"),
            "{line}"
        );
        assert_eq!(describe_queries(&[]), "no query was recorded");
    }

    #[tokio::test]
    #[should_panic(
        expected = "expected exactly 2 queries for api.svc.test. A, found 1; 1 recorded:\n  api.svc.test. A over UDP"
    )]
    async fn a_failed_count_lists_what_was_recorded() {
        asked_once().await.expect("api.svc.test").qtype(RecordType::A).times(2);
    }

    #[tokio::test]
    #[should_panic(expected = "expected exactly 0 queries for api.svc.test.")]
    async fn never_fails_when_asked() {
        asked_once().await.assert_not_queried("api.svc.test");
    }

    #[tokio::test]
    #[should_panic(expected = "expected at least 1 queries for other.svc.test. A")]
    async fn assert_queried_fails_when_not_asked() {
        asked_once().await.assert_queried("other.svc.test", RecordType::A);
    }

    #[tokio::test]
    #[should_panic(expected = "\"a..b\" is not a valid name")]
    async fn an_invalid_name_is_said_so() {
        asked_once().await.expect("a..b").never();
    }

    #[tokio::test]
    async fn waiting_for_an_invalid_name_fails_at_once() {
        let dns = asked_once().await;
        let error = dns.expect("a..b").wait(Duration::from_secs(60)).await.unwrap_err();
        assert!(error.to_string().contains("not a valid name"), "{error}");
    }

    #[tokio::test]
    async fn any_test_layer_can_be_checked() {
        let layer = TestLayer::new().recording(true);
        let expectation = QueryExpectation::new(&layer).name("x.test");
        expectation.clone().never();
        assert!(expectation.wait(Duration::from_millis(20)).await.is_err());
    }
}
