// Package control is the control protocol between PID 1 and the worker:
// one request type and one reply type per operation, every field bounded
// and validated on decode, errors as typed kinds, a limit on the requests
// in flight in each direction and a rate limit on signing. PID 1
// (firmware/appliance) and the worker both import it and never each other.
//
// Framing: one JSON object per line over a socketpair, at most MaxLine
// bytes with its newline:
//
//	{"id":7,"op":"pull","body":{...}}            a request (id 0: no reply wanted)
//	{"id":7,"op":"pull","reply":true,"body":{...},"err":{"kind":"not-found","text":"..."}}
//
// Unknown fields, unknown ops, an op sent by the wrong side and a body that
// fails its Validate are refused (a reply of kind "invalid" or "refused");
// a line over MaxLine ends the connection.
//
// The operations (the table is checked against Ops by TestDocsTable, here
// and in docs/control.md):
//
//	| op               | from   | request fields                                 | reply fields      |
//	|------------------|--------|------------------------------------------------|-------------------|
//	| init             | pid1   | keys config store_dir disks trusted_time       | -                 |
//	|                  |        | create recovery                                |                   |
//	| pull             | pid1   | source                                         | status            |
//	| extend           | pid1   | snapshot until hold reason                     | -                 |
//	| scrub            | pid1   | -                                              | summary           |
//	| restore          | pid1   | snapshot target prefix exact receipt_key       | restore           |
//	| restore-progress | pid1   | -                                              | restore           |
//	| quiesce          | pid1   | -                                              | busy              |
//	| send-alert       | pid1   | kind text                                      | (notice)          |
//	| sign             | worker | snapshot                                       | receipt           |
//	| status           | worker | source status                                  | (notice)          |
//	| alert            | worker | kind source snapshot text                      | (notice)          |
//	| primary          | worker | disk                                           | (notice)          |
//	| mirror           | worker | text                                           | (notice)          |
//	| scrub-progress   | worker | text                                           | (notice)          |
//
// A "(notice)" op is sent with id 0 and gets no reply. "sign" names a
// snapshot only: PID 1 computes the digest itself from the sealed manifest
// in the store. Scrub results are not sent to PID 1 at all: the worker
// records them in the store's state directory (services/store scrub state),
// which PID 1 reads in the maintenance window as hostile input that can
// only make it repair more.
//
// Errors cross as a Kind and a bounded text (Error): refused, invalid,
// not-found, busy, disk-failed, internal. A receiver acts on the kind,
// never on words in the text.
//
// Limits: the text fields are data, never paths or commands (the one path,
// init's store_dir and disks, goes from PID 1 to the worker); a receiver
// must still check every name against what it knows (PID 1 accepts status
// only for a configured source, sign only for a sealed manifest).
package control
