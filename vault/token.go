package vault

import "time"

// TokenExpiration is when the token in use expires, as last renewed; zero
// before the first login, after the token was dropped, or for a token
// without a TTL. Metrics export it so an operator sees a token about to
// lapse (a renewal that stopped working) before certificates do.
func (c *Client) TokenExpiration() time.Time { return c.session.Expiration() }
