// Calls a running auditlog server from Go, as another team's service would:
// stubs generated from proto/auditlog/v1/audit.proto by protoc-gen-go and
// protoc-gen-go-grpc, a grpc-go client over a socket. Checkpoints and proofs
// are checked with Go's own implementations of signed notes and of RFC 6962
// trees (golang.org/x/mod/sumdb/note and sumdb/tlog, where the C2SP
// signed-note format comes from): an auditor's tools, sharing nothing with
// the server.
//
//	AUDITLOG_TARGET=127.0.0.1:PORT AUDITLOG_VERIFIER_KEY=KEY go test -v
//
// run.sh generates the stubs and builds this in GOPATH mode against Debian's
// Go packages (the build has no module proxy); KEY is what
// `auditlog-server --print-verifier-key` printed for the server's data
// directory.
package auditlogtest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	pb "auditlogtest/gen/auditlogv1"
)

var client pb.AuditServiceClient
var conn *grpc.ClientConn

// A lead id of this run's own, so a rerun against the same server starts
// from nothing.
var run = strconv.FormatInt(time.Now().UnixNano(), 36)

func TestMain(m *testing.M) {
	target := os.Getenv("AUDITLOG_TARGET")
	if target == "" {
		target = "127.0.0.1:50051"
	}
	var err error
	// grpc.WithInsecure: Debian's grpc-go (1.33) predates credentials/insecure.
	conn, err = grpc.Dial(target, grpc.WithInsecure())
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		os.Exit(1)
	}
	client = pb.NewAuditServiceClient(conn)
	code := m.Run()
	conn.Close()
	os.Exit(code)
}

func call(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func lead(name string) string { return "GO-" + run + "-" + name }

func logOne(t *testing.T, ev *pb.EventInput) *pb.Receipt {
	t.Helper()
	resp, err := client.Log(call(t), &pb.LogRequest{Event: ev})
	if err != nil {
		t.Fatalf("Log: %v", err)
	}
	if resp.GetReceipt().GetSeq() == 0 || resp.GetReceipt().GetSignature() == "" {
		t.Fatalf("receipt without seq or signature: %v", resp.GetReceipt())
	}
	return resp.GetReceipt()
}

// Every event about `leadID`, oldest first, read a page of `limit` at a time.
func history(t *testing.T, leadID string, limit uint32, asJSON bool) []*pb.Event {
	t.Helper()
	var events []*pb.Event
	token := ""
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("more than 100 pages: the page token does not advance")
		}
		resp, err := client.Query(call(t), &pb.QueryRequest{
			Filter:        &pb.EventFilter{LeadId: leadID},
			Limit:         limit,
			OldestFirst:   true,
			PageToken:     token,
			DetailsAsJson: asJSON,
		})
		if err != nil {
			t.Fatalf("Query: %v", err)
		}
		events = append(events, resp.GetEvents()...)
		if token = resp.GetNextPageToken(); token == "" {
			return events
		}
	}
}

func TestHealthSaysTheLogTakesWrites(t *testing.T) {
	resp, err := healthpb.NewHealthClient(conn).Check(call(t),
		&healthpb.HealthCheckRequest{Service: "auditlog.v1.AuditService"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v", resp.GetStatus())
	}
}

func TestDetailsAsStructAndAsJSONTextReadBackAlike(t *testing.T) {
	want := map[string]any{"source": "webform", "score": 87.0, "tags": []any{"a", "b"},
		"nested": map[string]any{"ok": true, "none": nil}}
	details, err := structpb.NewStruct(want)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := json.Marshal(want)
	id := lead("details")
	first := logOne(t, &pb.EventInput{EventType: "lead_ingested", LeadId: id, Workflow: "sales", Details: details})
	second := logOne(t, &pb.EventInput{EventType: "lead_scored", LeadId: id, Workflow: "sales",
		DetailsJson: string(text)})
	if second.GetSeq() <= first.GetSeq() {
		t.Fatalf("seqs do not increase: %d then %d", first.GetSeq(), second.GetSeq())
	}
	events := history(t, id, 0, false)
	if len(events) != 2 {
		t.Fatalf("%d events for the lead, want 2", len(events))
	}
	for _, ev := range events {
		if got := ev.GetDetails().AsMap(); !reflect.DeepEqual(got, want) {
			t.Errorf("seq %d details %v, want %v", ev.GetSeq(), got, want)
		}
	}
	for _, ev := range history(t, id, 0, true) {
		var got map[string]any
		if err := json.Unmarshal([]byte(ev.GetDetailsJson()), &got); err != nil {
			t.Fatalf("details_json of seq %d: %v", ev.GetSeq(), err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("seq %d details_json %v, want %v", ev.GetSeq(), got, want)
		}
	}
}

func TestARetryWithTheSameIdempotencyKeyWritesNothing(t *testing.T) {
	ev := &pb.EventInput{EventType: "email_sent", LeadId: lead("retry"), IdempotencyKey: "go-" + run}
	first := logOne(t, ev)
	again := logOne(t, ev)
	if again.GetSeq() != first.GetSeq() || !again.GetDuplicate() || first.GetDuplicate() {
		t.Fatalf("first %v, again %v: want the same seq, the second a duplicate", first, again)
	}
}

func TestABatchIsConsecutiveAndPagesReadItWhole(t *testing.T) {
	id := lead("batch")
	var events []*pb.EventInput
	for i := 0; i < 7; i++ {
		events = append(events, &pb.EventInput{EventType: "crm_updated", LeadId: id, Actor: "go-test",
			DetailsJson: fmt.Sprintf(`{"step": %d}`, i)})
	}
	resp, err := client.LogBatch(call(t), &pb.LogBatchRequest{Events: events})
	if err != nil {
		t.Fatal(err)
	}
	receipts := resp.GetReceipts()
	for i, r := range receipts {
		if r.GetSeq() != receipts[0].GetSeq()+uint64(i) {
			t.Fatalf("receipt %d has seq %d after %d: not consecutive", i, r.GetSeq(), receipts[0].GetSeq())
		}
	}
	read := history(t, id, 3, false)
	if len(read) != len(events) {
		t.Fatalf("read %d events in pages of 3, want %d", len(read), len(events))
	}
	for i, ev := range read {
		if ev.GetSeq() != receipts[i].GetSeq() || ev.GetDetails().AsMap()["step"] != float64(i) {
			t.Errorf("event %d: seq %d details %v", i, ev.GetSeq(), ev.GetDetails().AsMap())
		}
	}
}

func TestBadInputNamesTheField(t *testing.T) {
	_, err := client.Log(call(t), &pb.LogRequest{Event: &pb.EventInput{EventType: "Not Snake Case"}})
	st, _ := status.FromError(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("status %v, want INVALID_ARGUMENT", err)
	}
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	if len(fields) != 1 || fields[0] != "event.event_type" {
		t.Fatalf("BadRequest fields %v, want [event.event_type] (message %q)", fields, st.Message())
	}
	_, err = client.LogBatch(call(t), &pb.LogBatchRequest{})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("an empty batch: %v, want INVALID_ARGUMENT", err)
	}
}

func TestStreamHistoryEndsAtTheHeadAndVerificationIsClean(t *testing.T) {
	logOne(t, &pb.EventInput{EventType: "workflow_completed", LeadId: lead("stream")})
	stats, err := client.GetStats(call(t), &pb.GetStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := client.StreamEvents(call(t), &pb.StreamEventsRequest{FromSeq: 1})
	if err != nil {
		t.Fatal(err)
	}
	var next uint64 = 1
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		if msg.GetEvent().GetSeq() != next {
			t.Fatalf("stream sent seq %d where %d was due", msg.GetEvent().GetSeq(), next)
		}
		next++
	}
	if next-1 < stats.GetHeadSeq() {
		t.Fatalf("the stream ended at seq %d, before the head %d", next-1, stats.GetHeadSeq())
	}
	report, err := client.VerifyIntegrity(call(t), &pb.VerifyIntegrityRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !report.GetOk() || report.GetEventsChecked() < stats.GetHeadSeq() {
		t.Fatalf("verification: ok %v, %d checked of %d, problems %v",
			report.GetOk(), report.GetEventsChecked(), stats.GetHeadSeq(), report.GetProblems())
	}
}

// A signed checkpoint opened with the verifier key and read as C2SP
// tlog-checkpoint text: origin, size, root.
func checkpoint(t *testing.T, vkey string) (size int64, root tlog.Hash) {
	t.Helper()
	resp, err := client.GetCheckpoint(call(t), &pb.GetCheckpointRequest{Fresh: true})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetVerifierKey() != vkey {
		t.Fatalf("the server names key %q, the operator handed out %q", resp.GetVerifierKey(), vkey)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatalf("the verifier key does not read as a signed-note key: %v", err)
	}
	cp := resp.GetCheckpoint()
	opened, err := note.Open([]byte(cp.GetNote()), note.VerifierList(verifier))
	if err != nil {
		t.Fatalf("the note does not verify: %v\n%s", err, cp.GetNote())
	}
	lines := strings.Split(opened.Text, "\n")
	if len(lines) < 4 || lines[0] != cp.GetOrigin() {
		t.Fatalf("checkpoint text %q: want origin %q, size and root", opened.Text, cp.GetOrigin())
	}
	size, err = strconv.ParseInt(lines[1], 10, 64)
	if err != nil || uint64(size) != cp.GetTreeSize() {
		t.Fatalf("checkpoint size line %q, the response says %d", lines[1], cp.GetTreeSize())
	}
	raw, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(raw) != len(root) || string(raw) != string(cp.GetRootHash()) {
		t.Fatalf("checkpoint root line %q does not match the response's root", lines[2])
	}
	copy(root[:], raw)
	// Another key of the same name is refused.
	_, other, _ := note.GenerateKey(nil, verifier.Name())
	if otherVerifier, err := note.NewVerifier(other); err == nil {
		if _, err := note.Open([]byte(cp.GetNote()), note.VerifierList(otherVerifier)); err == nil {
			t.Fatal("the note verified with another key")
		}
	}
	return size, root
}

func hashes(raw [][]byte) []tlog.Hash {
	out := make([]tlog.Hash, len(raw))
	for i, h := range raw {
		copy(out[i][:], h)
	}
	return out
}

func TestCheckpointsAndProofsVerifyWithGosOwnTlog(t *testing.T) {
	vkey := os.Getenv("AUDITLOG_VERIFIER_KEY")
	if vkey == "" {
		t.Fatal("AUDITLOG_VERIFIER_KEY is not set: give what auditlog-server --print-verifier-key prints")
	}
	logOne(t, &pb.EventInput{EventType: "lead_ingested", LeadId: lead("proofs")})
	first, firstRoot := checkpoint(t, vkey)
	for i := 0; i < 5; i++ {
		logOne(t, &pb.EventInput{EventType: "email_sent", LeadId: lead("proofs")})
	}
	size, root := checkpoint(t, vkey)
	if size < first+5 {
		t.Fatalf("a fresh checkpoint of size %d after 5 writes on top of %d", size, first)
	}
	for seq := int64(1); seq <= size; seq++ {
		p, err := client.GetInclusionProof(call(t),
			&pb.GetInclusionProofRequest{Seq: uint64(seq), TreeSize: uint64(size)})
		if err != nil {
			t.Fatalf("inclusion proof of seq %d: %v", seq, err)
		}
		line := p.GetLine()
		proof := tlog.RecordProof(hashes(p.GetHashes()))
		if err := tlog.CheckRecord(proof, size, root, seq-1, tlog.RecordHash(line)); err != nil {
			t.Fatalf("seq %d is not proved in the tree of size %d: %v", seq, size, err)
		}
		changed := append([]byte{}, line...)
		changed[len(changed)/2] ^= 1
		if tlog.CheckRecord(proof, size, root, seq-1, tlog.RecordHash(changed)) == nil {
			t.Fatalf("a changed line of seq %d was proved", seq)
		}
	}
	c, err := client.GetConsistencyProof(call(t),
		&pb.GetConsistencyProofRequest{FirstSize: uint64(first), SecondSize: uint64(size)})
	if err != nil {
		t.Fatal(err)
	}
	proof := tlog.TreeProof(hashes(c.GetHashes()))
	if err := tlog.CheckTree(proof, size, root, first, firstRoot); err != nil {
		t.Fatalf("the tree of size %d does not extend the one of size %d: %v", size, first, err)
	}
	forged := firstRoot
	forged[0] ^= 1
	if tlog.CheckTree(proof, size, root, first, forged) == nil {
		t.Fatal("a consistency proof held for another first root")
	}
}
