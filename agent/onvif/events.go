package onvif

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Kinds of camera events a Notification may be, by its topic.
const (
	// KindTamper: the camera was covered, sprayed or turned away
	// (TamperDetector, GlobalSceneChange).
	KindTamper = "tamper"
	// KindMotion: something moved in the picture (MotionAlarm,
	// CellMotionDetector); not a fault.
	KindMotion = "motion"
	// The picture is too blurry, dark or bright (ImageTooBlurry,
	// ImageTooDark, ImageTooBright).
	KindBlurry = "too_blurry"
	KindDark   = "too_dark"
	KindBright = "too_bright"
)

// Notification is one event a camera sent.
type Notification struct {
	Topic string    // e.g. tns1:RuleEngine/TamperDetector/Tamper
	At    time.Time // when the camera says it happened (zero when it does not say)
	// Active is the state the event reports (IsTamper, State, IsMotion…);
	// Known says whether it reported one.
	Active, Known bool
}

// Kind is what the notification means for the agent: one of the Kind
// constants, or "" for a topic it does not use.
func (n Notification) Kind() string {
	t := strings.ToLower(n.Topic)
	switch {
	case strings.Contains(t, "tamperdetector") || strings.Contains(t, "globalscenechange"):
		return KindTamper
	case strings.Contains(t, "motionalarm") || strings.Contains(t, "cellmotiondetector"):
		return KindMotion
	case strings.Contains(t, "imagetooblurry"):
		return KindBlurry
	case strings.Contains(t, "imagetoodark"):
		return KindDark
	case strings.Contains(t, "imagetoobright"):
		return KindBright
	}
	return ""
}

// Subscription is a pull-point subscription to a camera's events.
type Subscription struct {
	c       *Client
	address string
}

// Subscribe asks the camera's event service (its address from
// GetCapabilities) for a pull-point subscription that lives ten minutes
// past the last pull.
func (c *Client) Subscribe(ctx context.Context) (*Subscription, error) {
	var caps struct {
		Events string `xml:"Body>GetCapabilitiesResponse>Capabilities>Events>XAddr"`
	}
	if err := c.call(ctx, `<tds:GetCapabilities xmlns:tds="http://www.onvif.org/ver10/device/wsdl"><tds:Category>Events</tds:Category></tds:GetCapabilities>`, true, &caps); err != nil {
		return nil, err
	}
	events, err := c.serviceURL(caps.Events)
	if err != nil {
		return nil, fmt.Errorf("onvif: GetCapabilities: the event service: %w", err)
	}
	var sub struct {
		Address string `xml:"Body>CreatePullPointSubscriptionResponse>SubscriptionReference>Address"`
	}
	if err := c.callAt(ctx, events, `<tev:CreatePullPointSubscription xmlns:tev="http://www.onvif.org/ver10/events/wsdl"><tev:InitialTerminationTime>PT10M</tev:InitialTerminationTime></tev:CreatePullPointSubscription>`, true, &sub); err != nil {
		return nil, err
	}
	address, err := c.serviceURL(sub.Address)
	if err != nil {
		return nil, fmt.Errorf("onvif: CreatePullPointSubscription: the subscription: %w", err)
	}
	return &Subscription{c: c, address: address}, nil
}

// Pull waits up to wait (1–60 s) for the camera's next events, at most 64.
func (s *Subscription) Pull(ctx context.Context, wait time.Duration) ([]Notification, error) {
	if wait < time.Second || wait > time.Minute {
		return nil, errors.New("onvif: Pull waits 1 s to 1 min")
	}
	var r struct {
		Messages []struct {
			Topic   string `xml:"Topic"`
			Message struct {
				UtcTime string `xml:"UtcTime,attr"`
				Data    []struct {
					Name  string `xml:"Name,attr"`
					Value string `xml:"Value,attr"`
				} `xml:"Data>SimpleItem"`
			} `xml:"Message>Message"`
		} `xml:"Body>PullMessagesResponse>NotificationMessage"`
	}
	body := fmt.Sprintf(`<tev:PullMessages xmlns:tev="http://www.onvif.org/ver10/events/wsdl"><tev:Timeout>PT%dS</tev:Timeout><tev:MessageLimit>64</tev:MessageLimit></tev:PullMessages>`, int(wait.Seconds()))
	if err := s.c.callAt(ctx, s.address, body, true, &r); err != nil {
		return nil, err
	}
	out := make([]Notification, 0, min(len(r.Messages), 64))
	for _, m := range r.Messages[:min(len(r.Messages), 64)] {
		n := Notification{Topic: strings.TrimSpace(m.Topic)}
		if at, err := time.Parse(time.RFC3339Nano, m.Message.UtcTime); err == nil {
			n.At = at.UTC()
		}
		for _, d := range m.Message.Data {
			switch strings.ToLower(d.Value) {
			case "true", "1":
				n.Active, n.Known = true, true
			case "false", "0":
				n.Active, n.Known = false, true
			}
		}
		out = append(out, n)
	}
	return out, nil
}
