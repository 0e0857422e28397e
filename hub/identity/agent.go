package identity

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/citywatch/citywatch/hub/broker"
	"github.com/citywatch/citywatch/wire"
)

// AgentCredential is an agent's MQTT credential: its id is the username
// and its secret is kept only as a Mosquitto "$7$" hash, so the same hash
// serves the embedded broker and a Mosquitto password file. Revoked ones
// are kept, for the record.
type AgentCredential struct {
	Agent     string    `json:"agent"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	RevokedBy string    `json:"revoked_by,omitempty"`
	Hash      string    `json:"-"`
}

// Active reports whether the credential is not revoked.
func (a AgentCredential) Active() bool { return a.RevokedAt.IsZero() }

var _ broker.Clients = (*Service)(nil)

// agentVerified remembers a secret that matched, by its SHA-256, for the
// hash it matched: a rotated credential has another hash and misses.
type agentVerified struct {
	hash   string
	digest [32]byte
	until  time.Time
}

// EnrollAgent makes a credential for an agent and returns its secret: the
// only time it is shown. Enrolling an agent again replaces its secret; the
// old one fails at once and OnAgentRevoked is told, as for a revocation.
func (s *Service) EnrollAgent(ctx context.Context, actor Actor, agentID string) (string, error) {
	secret, rotated, err := s.enrollAgent(ctx, actor, agentID)
	detail := "new"
	if rotated {
		detail = "secret replaced; the old one no longer works"
	}
	s.outcome(ctx, actor, "agent.enroll", "agent/"+clip(agentID), err, detail)
	if err != nil {
		return "", err
	}
	if rotated {
		s.agentsRevoked([]string{agentID})
	}
	return secret, nil
}

func (s *Service) enrollAgent(ctx context.Context, actor Actor, id string) (string, bool, error) {
	if err := wire.ValidID(id); err != nil {
		return "", false, badRequest("agent %v", err)
	}
	secret := randSecret(agentPrefix)
	hash, err := broker.HashSecret(secret)
	if err != nil {
		return "", false, err
	}
	unlock := s.lockWrite(ctx)
	defer unlock()
	old, exists := s.st.agents[id]
	rotated := exists && old.Active()
	if !rotated {
		n := 0
		for _, a := range s.st.agents {
			if a.Active() {
				n++
			}
		}
		if n >= s.cfg.MaxAgents {
			return "", false, conflict("%d agents are enrolled, the most allowed; revoke one first", n)
		}
	}
	rec := AgentCredential{Agent: id, Hash: hash, CreatedAt: s.now(), CreatedBy: actor.Name}
	err = s.update(ctx, func(tx Tx) error { return tx.PutAgent(rec) }, func(st *state) { st.agents[id] = rec })
	return secret, rotated, err
}

// RevokeAgent revokes an agent's credential at once and tells
// OnAgentRevoked. Revoking a revoked agent does nothing.
func (s *Service) RevokeAgent(ctx context.Context, actor Actor, agentID string) error {
	unlock := s.lockWrite(ctx)
	a, ok := s.st.agents[agentID]
	var err error
	switch {
	case !ok:
		err = notFound("no agent %q is enrolled", clip(agentID))
	case !a.Active():
		unlock()
		return nil
	default:
		a.RevokedAt, a.RevokedBy = s.now(), actor.Name
		err = s.update(ctx, func(tx Tx) error { return tx.PutAgent(a) }, func(st *state) { st.agents[agentID] = a })
	}
	unlock()
	s.outcome(ctx, actor, "agent.revoke", "agent/"+clip(agentID), err, "")
	if err != nil {
		return err
	}
	s.agentsRevoked([]string{agentID})
	return nil
}

// AgentCredentials lists every credential, revoked ones too, by agent.
func (s *Service) AgentCredentials(ctx context.Context) ([]AgentCredential, error) {
	s.mu.RLock()
	out := make([]AgentCredential, 0, len(s.st.agents))
	for _, a := range s.st.agents {
		out = append(out, a)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b AgentCredential) int { return strings.Compare(a.Agent, b.Agent) })
	return out, ctx.Err()
}

// AgentRevoked reports whether agent id's credential is revoked (and not
// enrolled again since). Ingest asks for every message, so it only reads
// memory.
func (s *Service) AgentRevoked(id string) bool {
	a, ok := s.agentCredential(id)
	return ok && !a.Active()
}

func (s *Service) agentCredential(id string) (AgentCredential, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a, ok := s.st.agents[id]
	return a, ok
}

// CheckAgent is the broker's check of an MQTT CONNECT: username must be an
// enrolled, unrevoked agent and password its secret. A secret verified
// lately is remembered (by digest) so that a reconnect storm costs little;
// a revoked or replaced credential fails at once all the same.
func (s *Service) CheckAgent(username, password string) (string, bool) {
	a, ok := s.agentCredential(username)
	switch {
	case !ok:
		s.m.agentChecks.With("unknown").Inc()
		return "", false
	case !a.Active():
		s.m.agentChecks.With("revoked").Inc()
		return "", false
	case len(password) > maxPasswordLen:
		s.m.agentChecks.With("bad_secret").Inc()
		return "", false
	}
	d := sha256.Sum256([]byte(password))
	now := s.now()
	s.agentMu.Lock()
	v, cached := s.agentCache[username]
	s.agentMu.Unlock()
	if cached && v.hash == a.Hash && now.Before(v.until) && subtle.ConstantTimeCompare(v.digest[:], d[:]) == 1 {
		s.m.agentChecks.With("cached").Inc()
		return username, true
	}
	if ok, err := broker.VerifySecret(a.Hash, password); err != nil || !ok {
		if err != nil {
			s.fail("agent check", fmt.Errorf("agent %s: %w", username, err))
		}
		s.m.agentChecks.With("bad_secret").Inc()
		return "", false
	}
	if s.cfg.AgentCacheTTL > 0 {
		s.agentMu.Lock()
		// Still the same credential? A revocation may have come meanwhile.
		if cur, ok := s.agentCredential(username); ok && cur.Active() && cur.Hash == a.Hash {
			s.agentCache[username] = agentVerified{hash: a.Hash, digest: d, until: now.Add(s.cfg.AgentCacheTTL)}
		}
		s.agentMu.Unlock()
	}
	s.m.agentChecks.With("ok").Inc()
	return username, true
}

// WriteMosquittoFiles writes a Mosquitto password file (the hub's user and
// every active agent) and the ACL that confines each agent to its own
// topics, for a hub that uses an external Mosquitto. hubPasswordHash is a
// "$7$" hash (broker.HashSecret) of the hub's MQTT password.
func (s *Service) WriteMosquittoFiles(ctx context.Context, passwd, acl io.Writer, hubUser, hubPasswordHash string) error {
	if err := checkMosquittoUser(hubUser, hubPasswordHash); err != nil {
		return err
	}
	agents, err := s.AgentCredentials(ctx)
	if err != nil {
		return err
	}
	pw := bufio.NewWriter(passwd)
	fmt.Fprintf(pw, "%s:%s\n", hubUser, hubPasswordHash)
	for _, a := range agents {
		if !a.Active() {
			continue
		}
		if a.Agent == hubUser {
			return fmt.Errorf("identity: mosquitto files: the hub user %q is also an agent id", hubUser)
		}
		fmt.Fprintf(pw, "%s:%s\n", a.Agent, a.Hash)
	}
	if err := pw.Flush(); err != nil {
		return fmt.Errorf("identity: mosquitto password file: %w", err)
	}
	if _, err := io.WriteString(acl, mosquittoACL(hubUser)); err != nil {
		return fmt.Errorf("identity: mosquitto acl file: %w", err)
	}
	return nil
}

func checkMosquittoUser(user, hash string) error {
	var errs []error
	if user == "" || strings.ContainsAny(user, ": \t\r\n#") {
		errs = append(errs, fmt.Errorf("hub user %q: want a name without spaces, ':' or '#'", clip(user)))
	}
	if !strings.HasPrefix(hash, "$7$") || strings.ContainsAny(hash, ": \t\r\n") {
		errs = append(errs, errors.New("hub password hash: want a $7$ hash (broker.HashSecret)"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("identity: mosquitto files: %w", err)
	}
	return nil
}

// mosquittoACL ties each agent to its own topics. %u is the authenticated
// username, which is the agent id; the broker's config must set
// use_username_as_clientid true, so that the client id is the username
// too and no client can take over another agent's session (a client id is
// otherwise the client's choice).
//
// EMQX (5.x) says the same in its acl.conf:
//
//	{allow, {username, "HUB"}, all, ["citywatch/v1/agents/#"]}.
//	{allow, all, publish, ["citywatch/v1/agents/${username}/state", …/inventory, …/health, …/events, …/live]}.
//	{allow, all, subscribe, ["citywatch/v1/agents/${username}/commands"]}.
//	{deny, all}.
//
// EMQX reads no Mosquitto password file: its built-in database
// authenticator takes the same salt and hash (pbkdf2, sha512, 1000
// iterations, 64 bytes) per user, and mqtt.use_username_as_clientid ties
// the client id to the username as Mosquitto's setting does.
func mosquittoACL(hubUser string) string {
	var b strings.Builder
	b.WriteString("# citywatch: MQTT access control, written by citywatch-hub agents mosquitto.\n")
	b.WriteString("# Pattern lines hold for every client; %u is its username, the agent id.\n")
	b.WriteString("# mosquitto.conf must set use_username_as_clientid true, so an agent's\n")
	b.WriteString("# client id is its username and no one can take over its session.\n")
	for _, ch := range []wire.Channel{wire.ChannelState, wire.ChannelInventory, wire.ChannelHealth, wire.ChannelEvents, wire.ChannelLive, wire.ChannelSnapshot} {
		fmt.Fprintf(&b, "pattern write %s%%u/%s\n", wire.Prefix, ch)
	}
	fmt.Fprintf(&b, "pattern read %s%%u/%s\n", wire.Prefix, wire.ChannelCommands)
	b.WriteString("\n# The hub reads what agents publish and sends them commands.\n")
	fmt.Fprintf(&b, "user %s\ntopic read %s#\ntopic write %s#\n", hubUser, wire.Prefix, wire.Prefix)
	return b.String()
}
