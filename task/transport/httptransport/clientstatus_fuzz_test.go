package httptransport

import (
	"net/http"
	"testing"
)

// FuzzAnswerFailure feeds the server's status and reason header (outside
// input to the client) to answerFailure: the Failure's reason is always
// a short word (the server's, if it is one, else named by the status),
// so a hostile server cannot put text of its own into the client's logs
// and counters.
func FuzzAnswerFailure(f *testing.F) {
	f.Add(401, "bad_key")
	f.Add(503, "")
	f.Add(403, "not_known")
	f.Add(401, "bad key\r\nlevel: error")
	f.Add(500, "a_reason_that_is_far_too_long_to_be_a_word_of_the_protocol")
	f.Fuzz(func(t *testing.T, status int, reason string) {
		resp := &http.Response{StatusCode: status, Header: http.Header{}}
		resp.Header.Set(HeaderAuthError, reason)
		fl := answerFailure(OpPoll, resp)
		if !reasonWord(fl.Reason) {
			t.Fatalf("reason %q is not a word", fl.Reason)
		}
		if fl.Reason != resp.Header.Get(HeaderAuthError) && fl.Reason != statusReason(status) {
			t.Fatalf("reason %q neither the server's nor the status's", fl.Reason)
		}
		if fl.Status != status || fl.Op != OpPoll || len(fl.Kind()) > len(OpPoll)+1+20+1+32 {
			t.Fatalf("failure %+v, kind %q", fl, fl.Kind())
		}
	})
}
