package richnotify

import (
	"context"
	"fmt"
	"time"
)

// maxTokensPerBody bounds the work one body can ask for: Graph sends one token per app and tenant that has
// notifications in the body, so a body for one app in one tenant carries one.
const maxTokensPerBody = 16

// ValidateAll checks the validationTokens array of one notification body: there must be at least one, no
// more than a handful, and every one must pass Validate. A body whose tokens do not all pass is not
// believed at all, whichever notification each token was minted for. The error is a *TokenError (the check
// "missing" when there is no token) or, when the keys could not be obtained, any other error.
func (v *TokenValidator) ValidateAll(ctx context.Context, tokens []string, at time.Time) error {
	if len(tokens) == 0 {
		return &TokenError{Check: "missing", Detail: "the body carries no validationTokens"}
	}
	if len(tokens) > maxTokensPerBody {
		return invalid("format", "%d validationTokens, more than %d", len(tokens), maxTokensPerBody)
	}
	for i, tok := range tokens {
		if _, err := v.Validate(ctx, tok, at); err != nil {
			return fmt.Errorf("validation token %d of %d: %w", i+1, len(tokens), err)
		}
	}
	return nil
}
