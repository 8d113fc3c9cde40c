//! One session's scheduler: which of its requests may start, and what goes
//! back to the client in what order. It does no I/O and reads no clock or
//! shared state, so every ordering rule and bound is tested as a scenario
//! (below), without sockets.
//!
//! Ordering (ZooKeeper's guarantees):
//! - replies leave in the order requests arrived (FIFO per session);
//! - writes start as soon as they arrive (pipelined into the log);
//! - a read starts only once every earlier write of the session completed,
//!   so a client always reads its own writes;
//! - a `sync` starts once earlier writes completed, and nothing after it
//!   starts until it completes (a read barrier);
//! - a watch event is written out when it is handed in: the connection hands
//!   in every event already queued before it runs a read, so an event always
//!   precedes the reply to any read that can see its change.
//!
//! Bounds ([`Limits`]): requests in flight and their bytes (past either, the
//! connection stops reading until replies go out); bytes waiting to be
//! written (past `out_pause_bytes` it stops reading and starts no read, so
//! pipelined reads of large nodes cannot pile up replies; past `out_bytes_max`,
//! which only events and write completions can reach, the connection is
//! closed: a client that does not read cannot make the server hold more);
//! a reply larger than `reply_bytes_max` is answered MarshallingError.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::BytesMut;
use roost_proto::{
    encode_notification, encode_reply, ErrorCode, EventType, KeeperState, OpCode, ReconfigRequest,
    ReplyHeader, Request, Response, WatcherEvent,
};

/// A reply's frame length prefix and header.
const REPLY_HEADER_BYTES: usize = 4 + 16;

/// The bounds one connection works within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Requests received and not yet answered (`maxOutstandingPerConnection`).
    pub requests_max: usize,
    /// Bytes of those requests (a lone request is always admitted).
    pub request_bytes_max: usize,
    /// Stop reading requests while this many bytes wait to be written.
    pub out_pause_bytes: usize,
    /// Close the connection when this many bytes wait to be written.
    pub out_bytes_max: usize,
    /// The largest reply sent.
    pub reply_bytes_max: usize,
}

/// A request as it came off the wire.
#[derive(Debug)]
pub(crate) enum Incoming {
    Request(Request),
    /// An unknown opcode or a lone `check`: ZooKeeper 3.9 answers
    /// Unimplemented and closes the connection.
    Unimplemented,
}

/// What the scheduler remembers of a request until it is answered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    pub xid: i32,
    pub opcode: OpCode,
    /// Its frame's size, counted against `request_bytes_max`.
    pub bytes: usize,
    pub received: Instant,
}

/// Work the connection must do for its session, in this order.
#[derive(Debug)]
pub(crate) enum Job {
    /// Propose this write; its outcome comes back through [`Scheduler::completed`].
    Write(Ticket, Request),
    /// Run this read (or session request) now and [`Scheduler::answer`] it.
    Read(Ticket, Request),
    /// Wait for the read barrier, then report through [`Scheduler::completed`].
    Sync(Ticket, String),
    /// Ready a membership change, then propose it; its outcome comes back
    /// through [`Scheduler::completed`]. A barrier, like `sync`: it starts
    /// after earlier writes complete, and nothing after it starts before it
    /// completes, since readying it takes time other writes must not overtake.
    Reconfig(Ticket, ReconfigRequest),
    /// Answer Unimplemented ([`Scheduler::answer`]); the connection then closes.
    Unimplemented(Ticket),
}

/// A request finished or an event went out: what the connection's
/// statistics and the server's request budget need to know of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    /// The request finished (answered or dropped); `None` for a watch event.
    pub request: Option<(OpCode, Instant)>,
    pub xid: i32,
    pub zxid: i64,
    /// The frame queued for the client; 0 when nothing was (a request
    /// dropped because the connection is closing).
    pub bytes: usize,
    /// Bytes of the request finished, no longer in flight.
    pub request_bytes: usize,
}

/// The outcome of a write or sync: its zxid and result.
type Outcome = (i64, Result<Response, ErrorCode>);

/// One session's queues and output.
pub(crate) struct Scheduler {
    limits: Limits,
    /// Received and not yet started, in arrival order.
    queue: VecDeque<(Ticket, Incoming)>,
    /// Started writes and syncs in start order, with their outcome once known
    /// out of turn ([`Scheduler::resolve`]); they are answered in this order.
    pending: VecDeque<(Ticket, Option<Outcome>)>,
    /// A `sync` or `reconfig` is pending: nothing after it starts.
    barrier_pending: bool,
    /// Bytes of the requests in `queue` and `pending` (and a read running).
    request_bytes: usize,
    /// Frames waiting to be written to the client.
    out: BytesMut,
    /// What was finished or sent since the last [`Scheduler::take_sent`].
    sent: Vec<Sent>,
    closing: Option<&'static str>,
}

impl Scheduler {
    pub(crate) fn new(limits: Limits) -> Self {
        Scheduler {
            limits,
            queue: VecDeque::new(),
            pending: VecDeque::new(),
            barrier_pending: false,
            request_bytes: 0,
            out: BytesMut::new(),
            sent: Vec::new(),
            closing: None,
        }
    }

    /// A request arrived; `bytes` is its frame's size.
    pub(crate) fn receive(
        &mut self,
        xid: i32,
        incoming: Incoming,
        bytes: usize,
        received: Instant,
    ) {
        let opcode = match &incoming {
            Incoming::Request(request) => request.opcode(),
            Incoming::Unimplemented => OpCode::Error,
        };
        self.request_bytes += bytes;
        self.queue.push_back((
            Ticket {
                xid,
                opcode,
                bytes,
                received,
            },
            incoming,
        ));
    }

    /// The next request that may start now, if any. Writes and syncs are
    /// pending from here until [`Scheduler::completed`]; a read must be
    /// [`Scheduler::answer`]ed before the next call.
    pub(crate) fn next_job(&mut self) -> Option<Job> {
        if self.closing.is_some() || self.barrier_pending {
            return None;
        }
        let (_, front) = self.queue.front()?;
        let is_write =
            matches!(front, Incoming::Request(r) if r.is_write() && r.opcode() != OpCode::Reconfig);
        if !is_write && !self.pending.is_empty() {
            return None;
        }
        if !is_write && self.out.len() >= self.limits.out_pause_bytes {
            // A read's reply can be large: it waits until the client has
            // taken what is already waiting (writes answer with a Stat).
            return None;
        }
        let (ticket, incoming) = self.queue.pop_front()?;
        Some(match incoming {
            Incoming::Request(request) if is_write => {
                self.pending.push_back((ticket, None));
                Job::Write(ticket, request)
            }
            Incoming::Request(Request::Sync(r)) => {
                self.pending.push_back((ticket, None));
                self.barrier_pending = true;
                Job::Sync(ticket, r.path)
            }
            Incoming::Request(Request::Reconfig(r)) => {
                self.pending.push_back((ticket, None));
                self.barrier_pending = true;
                Job::Reconfig(ticket, r)
            }
            Incoming::Request(request) => Job::Read(ticket, request),
            Incoming::Unimplemented => Job::Unimplemented(ticket),
        })
    }

    /// Queues the reply to a read or session request started by `next_job`.
    pub(crate) fn answer(
        &mut self,
        ticket: Ticket,
        zxid: i64,
        result: Result<Response, ErrorCode>,
    ) {
        self.reply(ticket, zxid, result);
        if ticket.opcode == OpCode::Error {
            self.close("unimplemented request");
        }
    }

    /// The outcome of the oldest pending write or sync, which must be `xid`'s.
    /// Nothing goes back to the client if the connection is closing (or
    /// starts closing here: an outcome out of order, the session moved away).
    pub(crate) fn completed(&mut self, xid: i32, zxid: i64, result: Result<Response, ErrorCode>) {
        // Resolved requests never stay at the front (see `answer_resolved`).
        let Some((ticket, None)) = self
            .pending
            .front()
            .map(|(t, o)| (*t, o.as_ref().map(|_| ())))
        else {
            self.close("reply with nothing pending");
            return;
        };
        if ticket.xid != xid {
            // A broken ordering invariant: never send a reply under the wrong xid.
            self.close("reply out of order");
            return;
        }
        self.pending.pop_front();
        self.finish(ticket, zxid, result);
        self.answer_resolved();
        self.check_backlog();
    }

    /// A started write answered without the log (refused before it was
    /// proposed): its reply goes out in turn, after earlier writes'.
    pub(crate) fn resolve(
        &mut self,
        ticket: Ticket,
        zxid: i64,
        result: Result<Response, ErrorCode>,
    ) {
        if let Some(slot) = self
            .pending
            .iter_mut()
            .find(|(t, o)| t.xid == ticket.xid && o.is_none())
        {
            slot.1 = Some((zxid, result));
        }
        self.answer_resolved();
    }

    /// Answers the pending requests at the front whose outcome is known.
    fn answer_resolved(&mut self) {
        while let Some((_, Some(_))) = self.pending.front() {
            if let Some((ticket, Some((zxid, result)))) = self.pending.pop_front() {
                self.finish(ticket, zxid, result);
            }
        }
    }

    /// Replies to a write or sync that left `pending`.
    fn finish(&mut self, ticket: Ticket, zxid: i64, result: Result<Response, ErrorCode>) {
        if matches!(ticket.opcode, OpCode::Sync | OpCode::Reconfig) {
            self.barrier_pending = false;
        }
        if self.closing.is_some() {
            // Closing already (e.g. a write's outcome was unknown): the
            // client gets no more replies, so none can be out of order.
            self.drop_request(ticket, zxid);
            return;
        }
        if matches!(result, Err(ErrorCode::SessionMoved)) {
            // As in ZooKeeper, a connection-level error: no reply, the client
            // finds its session where it moved to.
            self.close("session moved to another server");
            self.drop_request(ticket, zxid);
            return;
        }
        self.reply(ticket, zxid, result);
        if ticket.opcode == OpCode::CloseSession {
            self.close("session closed by the client");
        }
    }

    fn drop_request(&mut self, ticket: Ticket, zxid: i64) {
        self.request_bytes -= ticket.bytes;
        self.sent.push(Sent {
            request: Some((ticket.opcode, ticket.received)),
            xid: ticket.xid,
            zxid,
            bytes: 0,
            request_bytes: ticket.bytes,
        });
    }

    /// Queues a watch event (none once the connection is closing).
    pub(crate) fn notify(&mut self, zxid: i64, event: EventType, path: &str) {
        if self.closing.is_some() {
            return;
        }
        let start = self.out.len();
        encode_notification(
            zxid,
            &WatcherEvent {
                event_type: event.code(),
                state: KeeperState::SyncConnected.code(),
                path: path.to_string(),
            },
            &mut self.out,
        );
        self.sent.push(Sent {
            request: None,
            xid: roost_proto::xid::NOTIFICATION,
            zxid,
            bytes: self.out.len() - start,
            request_bytes: 0,
        });
        self.check_backlog();
    }

    fn reply(&mut self, ticket: Ticket, zxid: i64, result: Result<Response, ErrorCode>) {
        if self.closing.is_some() {
            self.drop_request(ticket, zxid);
            return;
        }
        self.request_bytes -= ticket.bytes;
        let (err, body) = match result {
            Ok(body) if REPLY_HEADER_BYTES + body.encoded_len() > self.limits.reply_bytes_max => {
                tracing::warn!(
                    "a reply of {} bytes is over the {}-byte limit: answering MarshallingError",
                    REPLY_HEADER_BYTES + body.encoded_len(),
                    self.limits.reply_bytes_max
                );
                (ErrorCode::MarshallingError.code(), Response::Empty)
            }
            Ok(body) => (0, body),
            Err(code) => (code.code(), Response::Empty),
        };
        let start = self.out.len();
        encode_reply(
            &ReplyHeader {
                xid: ticket.xid,
                zxid,
                err,
            },
            &body,
            &mut self.out,
        );
        self.sent.push(Sent {
            request: Some((ticket.opcode, ticket.received)),
            xid: ticket.xid,
            zxid,
            bytes: self.out.len() - start,
            request_bytes: ticket.bytes,
        });
    }

    /// What finished or went out since the last call.
    pub(crate) fn take_sent(&mut self) -> Vec<Sent> {
        std::mem::take(&mut self.sent)
    }

    /// Past `out_bytes_max` the connection closes at once: what it holds is
    /// dropped, not flushed, since its client is not reading.
    fn check_backlog(&mut self) {
        if self.out.len() > self.limits.out_bytes_max {
            self.close("client too far behind: pending bytes over the limit");
            self.out = BytesMut::new();
        }
    }

    /// Starts closing (the first reason given is kept).
    pub(crate) fn close(&mut self, reason: &'static str) {
        self.closing.get_or_insert(reason);
    }

    pub(crate) fn closing(&self) -> Option<&'static str> {
        self.closing
    }

    /// Whether more requests may be read from the client now.
    pub(crate) fn accepting(&self) -> bool {
        let in_flight = self.in_flight();
        self.closing.is_none()
            && in_flight < self.limits.requests_max.max(1)
            && (in_flight == 0 || self.request_bytes < self.limits.request_bytes_max)
            && self.out.len() < self.limits.out_pause_bytes
    }

    /// Requests received and not yet answered.
    pub(crate) fn in_flight(&self) -> usize {
        self.queue.len() + self.pending.len()
    }

    /// Writes (and syncs) started and not yet completed.
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Bytes of the requests in flight.
    pub(crate) fn request_bytes(&self) -> usize {
        self.request_bytes
    }

    /// Frames waiting to be written; the connection drains it.
    pub(crate) fn out(&mut self) -> &mut BytesMut {
        &mut self.out
    }

    /// Gives back a large output buffer once it has been written out (after
    /// a big reply), so an idle connection holds little memory.
    pub(crate) fn release_written_buffer(&mut self) {
        const KEEP_BYTES_MAX: usize = 64 << 10;
        if self.out.is_empty() && self.out.capacity() > KEEP_BYTES_MAX {
            self.out = BytesMut::new();
        }
    }
}

#[cfg(test)]
mod tests {
    //! Scenarios: each drives one scheduler and records what it does, and
    //! the transcript is compared with a reviewed expectation
    //! (`UPDATE_EXPECT=1` regenerates it).

    use super::*;
    use bytes::{Buf, Bytes};
    use expect_test::{expect, Expect};
    use roost_proto::{
        frame::split_frame, Decode, PathRequest, PathWatchRequest, Reader, SetDataRequest,
    };

    struct Script {
        scheduler: Scheduler,
        started: Instant,
        transcript: String,
        /// Read tickets handed out and not yet answered.
        reads: Vec<Ticket>,
    }

    fn limits() -> Limits {
        Limits {
            requests_max: 100,
            request_bytes_max: 1 << 20,
            out_pause_bytes: 4096,
            out_bytes_max: 16 * 1024,
            reply_bytes_max: 2048,
        }
    }

    impl Script {
        fn new(limits: Limits) -> Self {
            Script {
                scheduler: Scheduler::new(limits),
                started: Instant::now(),
                transcript: String::new(),
                reads: Vec::new(),
            }
        }

        fn log(&mut self, line: String) {
            self.transcript.push_str(&line);
            self.transcript.push('\n');
        }

        fn recv(&mut self, xid: i32, request: Request) {
            self.log(format!("recv {xid} {:?}", request.opcode()));
            self.scheduler
                .receive(xid, Incoming::Request(request), 100, self.started);
        }

        fn recv_unknown(&mut self, xid: i32) {
            self.log(format!("recv {xid} unknown opcode"));
            self.scheduler
                .receive(xid, Incoming::Unimplemented, 100, self.started);
        }

        /// Starts every job that may start, as the connection does.
        fn pump(&mut self) {
            while let Some(job) = self.scheduler.next_job() {
                let line = match job {
                    Job::Write(t, _) => format!("  start write {}", t.xid),
                    Job::Sync(t, path) => format!("  start sync {} {path}", t.xid),
                    Job::Reconfig(t, _) => format!("  start reconfig {}", t.xid),
                    Job::Read(t, _) => {
                        self.reads.push(t);
                        format!("  start read {}", t.xid)
                    }
                    Job::Unimplemented(t) => {
                        self.scheduler.answer(t, -1, Err(ErrorCode::Unimplemented));
                        format!("  answer {} Unimplemented", t.xid)
                    }
                };
                self.log(line);
                // A read runs at once; answer it before looking further.
                if let Some(t) = self.reads.pop() {
                    self.scheduler.answer(t, 7, Ok(Response::Empty));
                    self.log(format!("  answer read {}", t.xid));
                }
            }
            if let Some(reason) = self.scheduler.closing() {
                self.log(format!("  closing: {reason}"));
            }
        }

        fn complete(&mut self, xid: i32, result: Result<Response, ErrorCode>) {
            self.log(format!("complete {xid}"));
            self.scheduler.completed(xid, 9, result);
            if self
                .scheduler
                .take_sent()
                .iter()
                .all(|sent| sent.bytes == 0)
            {
                self.log("  (no reply)".into());
            }
        }

        fn event(&mut self, path: &str) {
            self.log(format!("event {path}"));
            self.scheduler.notify(8, EventType::NodeDataChanged, path);
        }

        /// Decodes everything written so far, one line a frame.
        fn flush(&mut self) {
            let mut out = self.scheduler.out().split();
            while let Some(frame) = split_frame(&mut out, usize::MAX >> 1).unwrap() {
                let mut r = Reader::new(frame);
                let header = ReplyHeader::decode(&mut r).unwrap();
                let line = if header.xid == roost_proto::xid::NOTIFICATION {
                    let event = WatcherEvent::decode(&mut r).unwrap();
                    format!("  -> event {}", event.path)
                } else {
                    format!("  -> reply {} err {}", header.xid, header.err)
                };
                self.log(line);
            }
            assert!(!out.has_remaining());
        }

        fn check(self, expected: Expect) {
            expected.assert_eq(&self.transcript);
        }
    }

    fn write(path: &str) -> Request {
        Request::SetData(SetDataRequest {
            path: path.into(),
            data: Some(Bytes::from_static(b"v")),
            version: -1,
        })
    }

    fn read(path: &str) -> Request {
        Request::GetData(PathWatchRequest {
            path: path.into(),
            watch: false,
        })
    }

    fn sync(path: &str) -> Request {
        Request::Sync(PathRequest { path: path.into() })
    }

    #[test]
    fn writes_pipeline_and_reads_wait_for_the_sessions_own_writes() {
        let mut s = Script::new(limits());
        s.recv(1, write("/a"));
        s.recv(2, write("/b"));
        s.recv(3, read("/a"));
        s.recv(4, write("/c"));
        s.pump();
        s.complete(1, Ok(Response::Empty));
        s.pump();
        s.complete(2, Ok(Response::Empty));
        s.pump();
        s.complete(4, Ok(Response::Empty));
        s.flush();
        s.check(expect![[r#"
            recv 1 SetData
            recv 2 SetData
            recv 3 GetData
            recv 4 SetData
              start write 1
              start write 2
            complete 1
            complete 2
              start read 3
              answer read 3
              start write 4
            complete 4
              -> reply 1 err 0
              -> reply 2 err 0
              -> reply 3 err 0
              -> reply 4 err 0
        "#]]);
    }

    #[test]
    fn a_sync_waits_for_earlier_writes_and_holds_back_everything_after_it() {
        let mut s = Script::new(limits());
        s.recv(1, write("/a"));
        s.recv(2, sync("/"));
        s.recv(3, read("/a"));
        s.recv(4, write("/b"));
        s.pump();
        s.complete(1, Ok(Response::Empty));
        s.pump();
        s.complete(2, Ok(Response::Sync("/".into())));
        s.pump();
        s.flush();
        s.check(expect![[r#"
            recv 1 SetData
            recv 2 Sync
            recv 3 GetData
            recv 4 SetData
              start write 1
            complete 1
              start sync 2 /
            complete 2
              start read 3
              answer read 3
              start write 4
              -> reply 1 err 0
              -> reply 2 err 0
              -> reply 3 err 0
        "#]]);
    }

    #[test]
    fn a_reconfig_waits_for_earlier_writes_and_holds_back_later_ones() {
        let mut s = Script::new(limits());
        s.recv(1, write("/a"));
        s.recv(
            2,
            Request::Reconfig(ReconfigRequest {
                joining_servers: None,
                leaving_servers: Some("3".into()),
                new_members: None,
                cur_config_id: -1,
            }),
        );
        s.recv(3, write("/b"));
        s.pump();
        s.complete(1, Ok(Response::Empty));
        s.pump();
        s.complete(2, Ok(Response::GetData(None, Default::default())));
        s.pump();
        s.flush();
        s.check(expect![[r#"
            recv 1 SetData
            recv 2 Reconfig
            recv 3 SetData
              start write 1
            complete 1
              start reconfig 2
            complete 2
              start write 3
              -> reply 1 err 0
              -> reply 2 err 0
        "#]]);
    }

    #[test]
    fn events_go_out_before_the_replies_that_follow_them() {
        let mut s = Script::new(limits());
        s.recv(1, write("/a"));
        s.recv(2, read("/a"));
        s.pump();
        // The write's own event is handed in with its outcome, before it.
        s.event("/a");
        s.complete(1, Ok(Response::Empty));
        s.pump();
        s.flush();
        s.check(expect![[r#"
            recv 1 SetData
            recv 2 GetData
              start write 1
            event /a
            complete 1
              start read 2
              answer read 2
              -> event /a
              -> reply 1 err 0
              -> reply 2 err 0
        "#]]);
    }

    #[test]
    fn a_write_refused_before_the_log_is_answered_in_turn() {
        let mut s = Script::new(limits());
        s.recv(1, write("/a"));
        s.recv(2, write("/denied"));
        s.recv(3, write("/b"));
        s.pump();
        s.log("resolve 2 NoAuth".into());
        let denied = Ticket {
            xid: 2,
            opcode: OpCode::SetData,
            bytes: 100,
            received: s.started,
        };
        s.scheduler.resolve(denied, 0, Err(ErrorCode::NoAuth));
        s.flush();
        s.complete(1, Ok(Response::Empty));
        s.complete(3, Ok(Response::Empty));
        s.flush();
        assert_eq!(s.scheduler.in_flight(), 0);
        assert_eq!(s.scheduler.request_bytes(), 0);
        s.check(expect![[r#"
            recv 1 SetData
            recv 2 SetData
            recv 3 SetData
              start write 1
              start write 2
              start write 3
            resolve 2 NoAuth
            complete 1
            complete 3
              -> reply 1 err 0
              -> reply 2 err -102
              -> reply 3 err 0
        "#]]);
    }

    #[test]
    fn an_outcome_out_of_order_closes_without_a_wrong_reply() {
        let mut s = Script::new(limits());
        s.recv(1, write("/a"));
        s.recv(2, write("/b"));
        s.pump();
        s.complete(2, Ok(Response::Empty));
        s.complete(1, Ok(Response::Empty));
        s.pump();
        s.flush();
        s.check(expect![[r#"
            recv 1 SetData
            recv 2 SetData
              start write 1
              start write 2
            complete 2
              (no reply)
            complete 1
              (no reply)
              closing: reply out of order
        "#]]);
    }

    #[test]
    fn session_moved_and_unknown_opcodes_close_the_connection() {
        let mut s = Script::new(limits());
        s.recv(1, write("/a"));
        s.pump();
        s.complete(1, Err(ErrorCode::SessionMoved));
        s.pump();
        s.flush();
        let mut u = Script::new(limits());
        u.recv(5, read("/a"));
        u.recv_unknown(6);
        u.recv(7, read("/a"));
        u.pump();
        u.flush();
        s.transcript.push_str(&u.transcript);
        s.check(expect![[r#"
            recv 1 SetData
              start write 1
            complete 1
              (no reply)
              closing: session moved to another server
            recv 5 GetData
            recv 6 unknown opcode
            recv 7 GetData
              start read 5
              answer read 5
              answer 6 Unimplemented
              closing: unimplemented request
              -> reply 5 err 0
              -> reply 6 err -6
        "#]]);
    }

    #[test]
    fn reading_stops_at_the_request_and_output_bounds() {
        let mut s = Scheduler::new(Limits {
            requests_max: 2,
            request_bytes_max: 250,
            ..limits()
        });
        let now = Instant::now();
        assert!(s.accepting());
        // A lone request is admitted whatever its size.
        s.receive(1, Incoming::Request(write("/a")), 1000, now);
        assert!(!s.accepting(), "over the request bytes");
        let Some(Job::Write(..)) = s.next_job() else {
            panic!("the write starts")
        };
        s.completed(1, 1, Ok(Response::Empty));
        assert!(s.accepting());
        s.receive(2, Incoming::Request(write("/a")), 10, now);
        s.receive(3, Incoming::Request(write("/a")), 10, now);
        assert!(!s.accepting(), "two requests in flight");
        while s.next_job().is_some() {}
        s.completed(2, 2, Ok(Response::Empty));
        assert!(s.accepting());
        // Output waiting to be written pauses reading...
        while s.out().len() < limits().out_pause_bytes {
            s.notify(3, EventType::NodeDataChanged, "/watched");
        }
        assert!(!s.accepting());
        assert_eq!(s.closing(), None);
        // ...and past its bound the connection closes, dropping what it held.
        for _ in 0..limits().out_bytes_max {
            if s.closing().is_some() {
                break;
            }
            s.notify(3, EventType::NodeDataChanged, "/watched");
        }
        assert_eq!(
            s.closing(),
            Some("client too far behind: pending bytes over the limit")
        );
        assert!(s.out().is_empty());
        s.notify(3, EventType::NodeDataChanged, "/watched");
        assert!(s.out().is_empty(), "nothing more is queued once closing");
    }

    #[test]
    fn reads_wait_while_replies_wait_to_be_written() {
        let mut s = Scheduler::new(limits());
        let now = Instant::now();
        s.receive(1, Incoming::Request(read("/big")), 10, now);
        s.receive(2, Incoming::Request(read("/big")), 10, now);
        s.receive(3, Incoming::Request(write("/big")), 10, now);
        let Some(Job::Read(ticket, _)) = s.next_job() else {
            panic!("the first read starts")
        };
        s.answer(ticket, 1, Ok(Response::Empty));
        while s.out().len() < limits().out_pause_bytes {
            s.notify(1, EventType::NodeDataChanged, "/watched");
        }
        assert!(
            s.next_job().is_none(),
            "the second read waits for the client"
        );
        s.out().clear();
        assert!(matches!(s.next_job(), Some(Job::Read(..))));
    }

    #[test]
    fn a_reply_over_the_limit_is_answered_marshalling_error() {
        let mut s = Scheduler::new(limits());
        s.receive(1, Incoming::Request(read("/big")), 10, Instant::now());
        let Some(Job::Read(ticket, _)) = s.next_job() else {
            panic!("a read starts")
        };
        let big = Response::GetData(Some(Bytes::from(vec![0u8; 4096])), Default::default());
        s.answer(ticket, 1, Ok(big));
        assert_eq!(s.take_sent()[0].bytes, REPLY_HEADER_BYTES);
        let mut frame = split_frame(s.out(), 1 << 20).unwrap().unwrap();
        let header = ReplyHeader::decode(&mut Reader::new(frame.split_to(16))).unwrap();
        assert_eq!(header.err, ErrorCode::MarshallingError.code());
    }
}
