package objectstate

import (
	"bufio"
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// The Table service answers a transaction with one HTTP response per entity, in the order of the
// request, each with the entity's new ETag (Microsoft's "Performing entity group transactions"). The SDK
// returns none of them (aztables' TransactionResponse is empty), so etagPolicy reads them from the raw
// answer for submit, which caches the rows it wrote with their ETags.

type batchAnswerKey struct{}

// batchAnswer receives the ETags of a transaction's answer, in order; nil when they could not be read.
type batchAnswer struct{ etags []string }

// etagPolicy fills the batchAnswer of a request's context from its answer, leaving the answer for the SDK
// to read as it came.
type etagPolicy struct{}

func (etagPolicy) Do(req *policy.Request) (*http.Response, error) {
	resp, err := req.Next()
	answer, _ := req.Raw().Context().Value(batchAnswerKey{}).(*batchAnswer)
	if err != nil || answer == nil || resp == nil || resp.Body == nil || resp.StatusCode != http.StatusAccepted {
		return resp, err
	}
	body, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if rerr != nil {
		return resp, err
	}
	answer.etags = batchETags(resp.Header.Get("Content-Type"), body)
	return resp, err
}

// batchETags reads the ETag of each operation's answer in a multipart/mixed batch answer (a changeset
// nested in the batch); nil when one is missing or the answer is not of that shape.
func batchETags(contentType string, body []byte) []string {
	var etags []string
	var walk func(contentType string, r io.Reader) bool
	walk = func(contentType string, r io.Reader) bool {
		mt, params, err := mime.ParseMediaType(contentType)
		if err != nil || !strings.HasPrefix(mt, "multipart/") || params["boundary"] == "" {
			return false
		}
		mr := multipart.NewReader(r, params["boundary"])
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				return true
			}
			if err != nil {
				return false
			}
			if ct := part.Header.Get("Content-Type"); strings.HasPrefix(ct, "multipart/") {
				if !walk(ct, part) {
					return false
				}
				continue
			}
			resp, err := http.ReadResponse(bufio.NewReader(part), nil)
			if err != nil {
				return false
			}
			resp.Body.Close()
			etag := resp.Header.Get("ETag")
			if etag == "" && resp.StatusCode != http.StatusNoContent {
				return false
			}
			etags = append(etags, etag)
		}
	}
	if !walk(contentType, bytes.NewReader(body)) {
		return nil
	}
	return etags
}
