package identity

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/url"
	"time"

	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/wire"
)

// Link is a viewing link: a WHEP URL with a token for one camera, for
// players that cannot send headers (go2rtc, OBS, GStreamer). It acts as
// its maker, with live.view only, within the maker's scope.
type Link struct {
	ID        string    `json:"id"`
	Camera    string    `json:"camera"`
	URL       string    `json:"url"` // path and query: the caller knows the hub's address
	ExpiresAt time.Time `json:"expires_at"`
}

// CreateLink makes a viewing link for camera, valid for ttl (0: the
// configured default). Only an account holding live.link may, for a
// camera it sees; other cameras are "not found" whether they exist or not.
func (s *Service) CreateLink(ctx context.Context, p *auth.Principal, camera string, ttl time.Duration) (Link, error) {
	actor := ActorOf(p)
	l, err := s.createLink(ctx, p, camera, ttl)
	s.outcome(ctx, actor, "live.link", "camera/"+clip(camera), err,
		fmt.Sprintf("link %s until %s", l.ID, l.ExpiresAt.Format(time.RFC3339)))
	return l, err
}

func (s *Service) createLink(ctx context.Context, p *auth.Principal, camera string, ttl time.Duration) (Link, error) {
	switch {
	case p == nil || p.Via != auth.ViaSession:
		return Link{}, forbidden("viewing links are made by people signed in to the console")
	case !p.Can(auth.LiveLink):
		return Link{}, forbidden("your role does not allow viewing links")
	case ttl < 0 || ttl > s.cfg.MaxLinkTTL:
		return Link{}, badRequest("a viewing link lasts at most %v", s.cfg.MaxLinkTTL)
	case wire.ValidID(camera) != nil || !s.cameraVisible(p.Scope, camera):
		return Link{}, notFound("no camera %q", clip(camera))
	}
	if ttl == 0 {
		ttl = s.cfg.LinkTTL
	}
	token := randSecret(linkPrefix)
	k := digest(token)
	now := s.now()
	rec := LinkRecord{
		ID: randID("lk-"), Hash: hex.EncodeToString(k[:]), Camera: camera, Account: p.Name,
		CreatedAt: now, ExpiresAt: now.Add(ttl),
	}
	unlock := s.lockWrite(ctx)
	err := s.update(ctx, func(tx Tx) error { return tx.InsertLink(rec) }, func(st *state) { st.links[k] = &rec })
	unlock()
	if err != nil {
		return Link{}, err
	}
	return Link{
		ID: rec.ID, Camera: camera, ExpiresAt: rec.ExpiresAt,
		URL: "/api/cameras/" + url.PathEscape(camera) + "/whep?token=" + url.QueryEscape(token),
	}, nil
}
