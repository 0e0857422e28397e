package uplink

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/citywatch/citywatch/wire"
)

// Connection settings. Keepalive decides how fast the broker notices a
// dead agent and fires its will: 1.5 × keepalive.
const (
	keepAlive            = 15 * time.Second
	connectTimeout       = 10 * time.Second
	connectRetryInterval = 2 * time.Second
	maxReconnectInterval = 30 * time.Second
	// writeTimeout bounds a socket write and a Publish blocked by a dead
	// connection; 5 s carries a large health report over a poor 4G link.
	writeTimeout = 5 * time.Second
)

func (c *Client) options(brokers []*url.URL) (*paho.ClientOptions, error) {
	will, err := c.will(1)
	if err != nil {
		return nil, err
	}
	opts := paho.NewClientOptions()
	for _, u := range brokers {
		opts.AddBroker(u.Scheme + "://" + hostPort(u))
	}
	opts.SetClientID(c.cfg.ClientID).
		// MQTT 3.1.1 only: paho would otherwise retry a refused CONNECT
		// as 3.1, and that answer would hide why the broker refused.
		SetProtocolVersion(4).
		SetUsername(c.cfg.Username).
		SetPassword(c.cfg.Password.Reveal()).
		// A persistent session keeps the command subscription, and
		// commands sent while the agent was away, across reconnects.
		SetCleanSession(false).
		// Handlers only enqueue, so they may run concurrently.
		SetOrderMatters(false).
		SetKeepAlive(keepAlive).
		SetConnectTimeout(connectTimeout).
		SetWriteTimeout(writeTimeout).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(connectRetryInterval).
		SetMaxReconnectInterval(maxReconnectInterval).
		SetBinaryWill(c.topics.state, will, 1, true).
		SetStore(c.store).
		SetCustomOpenConnectionFn(c.dial).
		// Commands the broker kept for this session arrive right after
		// CONNACK, before onConnect renews the route: without a default
		// handler paho would leave them unacknowledged until the next
		// reconnect.
		SetDefaultPublishHandler(c.onCommand).
		SetOnConnectHandler(c.onConnect).
		SetConnectionLostHandler(c.onConnectionLost).
		SetConnectionNotificationHandler(c.onConnectionNotification).
		SetReconnectingHandler(c.onReconnecting)
	return opts, nil
}

// will is the Last Will for connection n. Its Conn lets the hub tell the
// will of a connection that died from a stale will of an older one.
func (c *Client) will(n uint32) ([]byte, error) {
	data, err := json.Marshal(c.state(wire.AgentOffline, true, n))
	if err != nil {
		return nil, fmt.Errorf("uplink: will: %w", err)
	}
	return data, nil
}

// state builds a state message; a will carries Seq 0 because it is
// published by the broker at an unknown later point in the sequence.
func (c *Client) state(state string, will bool, conn uint32) *wire.State {
	h := wire.Header{V: wire.Version, Agent: c.cfg.Agent, Boot: c.cfg.Boot.UnixMilli(), TS: time.Now()}
	if !will {
		h.Seq = c.seq.Add(1)
	}
	return &wire.State{
		Header: h, State: state, Will: will, Conn: conn,
		Interval: c.cfg.Interval.Seconds(), Site: c.cfg.Site, Version: c.cfg.Version,
	}
}

// onReconnecting runs before every reconnect attempt: the will must name
// the connection about to be made, and nothing may be published on it
// before its birth message. Taking c.publishing waits for a Publish call
// caught by the drop (at most the write timeout): it would otherwise hand
// its message to the new connection ahead of the older ones paho resends.
// Once ready is false, the sender publishes nothing but the next birth.
func (c *Client) onReconnecting(_ paho.Client, opts *paho.ClientOptions) {
	c.publishing.Lock()
	c.epoch.Add(1) // live sessions of the lost connection are over
	c.mu.Lock()
	c.ready = false
	n := c.conns + 1
	c.listingsBefore = c.store.listings.Load()
	c.mu.Unlock()
	c.publishing.Unlock()
	will, err := c.will(n)
	if err != nil {
		c.log.Error("cannot update the will", "err", err)
		return
	}
	opts.WillPayload = will
}

func (c *Client) onConnect(cl paho.Client) {
	c.mu.Lock()
	c.conns++
	n := c.conns
	c.needBirth, c.ready = true, false
	c.mu.Unlock()
	c.log.Info("connected", "conn", n)
	c.queue.signal()

	// paho runs this handler on its own goroutine, so waiting is fine.
	tok := cl.Subscribe(c.topics.commands, 1, c.onCommand)
	if !tok.WaitTimeout(connectTimeout) {
		c.log.Warn("command subscription not confirmed", "topic", c.topics.commands)
	} else if err := tok.Error(); err != nil {
		c.log.Error("command subscription failed", "topic", c.topics.commands, "err", err)
	}
}

func (c *Client) onConnectionLost(_ paho.Client, err error) {
	c.log.Warn("connection lost; reconnecting", "err", err)
	c.queue.signal() // the sender moves the fresh lane to the backlog
}

// onConnectionNotification counts and logs failed connection attempts,
// which paho otherwise retries in silence. A broker refusing the
// credentials gets its own message: retrying cannot help until the agent
// is enrolled (or its secret fixed), so the operator must be told what to
// do. paho keeps retrying with its backoff either way, so an agent
// enrolled later connects by itself.
func (c *Client) onConnectionNotification(_ paho.Client, n paho.ConnectionNotification) {
	failed, ok := n.(paho.ConnectionNotificationFailed)
	if !ok {
		return
	}
	c.connFails.Add(1)
	if errors.Is(failed.Reason, packets.ErrorRefusedBadUsernameOrPassword) || errors.Is(failed.Reason, packets.ErrorRefusedNotAuthorised) {
		c.refused.Add(1)
		if ok, n := c.authLog.allow(); ok {
			c.log.Error(fmt.Sprintf("broker refused the agent's credentials — enrol it with `citywatch-hub agents enroll %s`", c.cfg.Agent),
				"cause", failed.Reason.Error(), "username", c.cfg.Username, "client_id", c.cfg.ClientID, "suppressed", n)
		}
		return
	}
	if ok, n := c.connLog.allow(); ok {
		c.log.Warn("cannot connect to the broker; retrying", "err", failed.Reason, "suppressed", n)
	}
}

// clientTLS returns the TLS settings for broker URL u: nil for a plain
// URL, else a copy of given (or the defaults) with the URL's host as the
// server name unless given names one, and TLS 1.2 at least.
func clientTLS(u *url.URL, given *tls.Config) (*tls.Config, error) {
	switch u.Scheme {
	case "tcp", "mqtt":
		if given != nil {
			return nil, fmt.Errorf("uplink: TLS settings for a %s:// broker URL, which connects without TLS", u.Scheme)
		}
		return nil, nil
	case "ssl", "tls", "mqtts":
	default:
		return nil, fmt.Errorf("uplink: unsupported broker scheme %q", u.Scheme)
	}
	cfg := &tls.Config{}
	if given != nil {
		cfg = given.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = u.Hostname()
	}
	cfg.MinVersion = max(cfg.MinVersion, tls.VersionTLS12)
	return cfg, nil
}

// dial opens the broker connection itself, so that DropConnection can
// close it without an MQTT DISCONNECT. The TLS handshake runs here, within
// the connect timeout, so a certificate problem is a failed attempt.
func (c *Client) dial(u *url.URL, opts paho.ClientOptions) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opts.ConnectTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	conn := raw
	if c.tls != nil {
		cfg := c.tls
		if c.cfg.TLS == nil || c.cfg.TLS.ServerName == "" {
			// Each broker of a cluster by its own name.
			cfg = cfg.Clone()
			cfg.ServerName = u.Hostname()
		}
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("uplink: TLS with %s: %w", u.Host, err)
		}
		conn = tc
	}
	dc := &dropConn{Conn: conn, raw: raw}
	c.mu.Lock()
	c.netConn = dc
	c.mu.Unlock()
	return dc, nil
}

// dropConn is a broker connection that can be cut from outside.
type dropConn struct {
	net.Conn
	raw     net.Conn // the TCP connection under TLS, or Conn itself
	dropped atomic.Bool
}

// errDropped replaces the read error after drop: paho ignores "use of
// closed network connection", taking it for its own Disconnect, and would
// not reconnect.
var errDropped = errors.New("uplink: connection dropped")

func (d *dropConn) Read(p []byte) (int, error) {
	n, err := d.Conn.Read(p)
	if err != nil && d.dropped.Load() {
		err = errDropped
	}
	return n, err
}

func (d *dropConn) drop() {
	if d.dropped.Swap(true) {
		return
	}
	// Reset rather than FIN, and no TLS close_notify: this is meant to
	// look like a cable cut.
	if tc, ok := d.raw.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = d.raw.Close()
}

func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	port := "1883"
	switch u.Scheme {
	case "ssl", "tls", "mqtts":
		port = "8883"
	}
	return net.JoinHostPort(u.Hostname(), port)
}
