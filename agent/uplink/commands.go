package uplink

import (
	"context"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/citywatch/citywatch/wire"
)

// onCommand runs on a paho goroutine: it validates and enqueues, nothing
// more, so a slow command cannot stall the client's keepalive.
func (c *Client) onCommand(_ paho.Client, m paho.Message) {
	msg, err := wire.Decode(m.Topic(), m.Payload(), time.Now())
	if err != nil {
		c.badCommand("invalid command", "err", err)
		return
	}
	if msg.Command == nil || msg.Agent != c.cfg.Agent {
		c.badCommand("not a command for this agent", "topic", m.Topic())
		return
	}
	cmd := *msg.Command
	if _, ok := c.cfg.Commands[cmd.Type]; !ok {
		c.badCommand("unsupported command", "type", cmd.Type, "id", cmd.ID)
		return
	}
	select {
	case c.cmdQueue <- cmd:
	default:
		c.badCommand("command queue full, command dropped", "type", cmd.Type, "id", cmd.ID)
	}
}

func (c *Client) badCommand(msg string, args ...any) {
	c.badCmds.Add(1)
	if ok, n := c.badLog.allow(); ok {
		c.log.Warn(msg, append(args, "suppressed", n)...)
	}
}

// runCommands carries out queued commands one at a time until ctx ends.
func (c *Client) runCommands(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case cmd := <-c.cmdQueue:
			c.log.Info("command", "type", cmd.Type, "id", cmd.ID, "devices", len(cmd.Devices))
			c.cfg.Commands[cmd.Type](ctx, cmd)
			c.commands.Add(1)
		}
	}
}
