package ui

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/metricstore"
)

// TestCodesShownInChinese opens the console in Chinese on one alarm of
// every source and type the hub raises (alarmTypes), an agent offline for
// a Last Will and a device behind it, and checks that no code shows as
// itself: the desk's type column, the agent_offline alarm's detail (the
// agent's reason), the live feed's agent line and the device's agent all
// say it in Chinese, acronyms aside.
func TestCodesShownInChinese(t *testing.T) {
	var list []any
	add := func(src alarm.Source, typ, detail string) {
		list = append(list, map[string]any{"id": fmt.Sprintf("A%d", len(list)+1), "device": "CAM-1", "agent": "AG-1", "site": "S-1", "district": "Xuhui",
			"severity": "major", "state": "active_unack", "source": src, "type": typ, "detail": detail, "count": 1,
			"first_at": "2026-12-01T00:00:00Z", "last_at": "2026-12-01T00:00:00Z"})
	}
	types := alarmTypes()
	for _, src := range alarm.Sources {
		if len(types[src].types) == 0 {
			add(src, string(src), "")
		}
		for _, ty := range types[src].types {
			add(src, ty, "")
		}
	}
	add(alarm.SourceAgentOffline, string(alarm.SourceAgentOffline), "will")
	will := list[len(list)-1].(map[string]any)["id"].(string)
	// A detail the hub wrote, with its figures.
	add(alarm.SourceTopology, "switch_down", "Switch SW-3 down — 3 devices offline")
	topo := list[len(list)-1].(map[string]any)
	topo["args"] = map[string]string{"node": "SW-3", "name": "", "kind": "switch", "devices": "3"}
	// Every other detail the hub writes, and its words in Chinese (times
	// in the browser's zone, Asia/Shanghai below). Identifiers and errors
	// from storage are shown as they are.
	hubWritten := []struct {
		src      alarm.Source
		typ      string
		args     map[string]string
		want, id string
	}{
		{alarm.SourceSecurity, alarm.TypeAgentRevoked, map[string]string{"agent": "AG-9"}, "凭据已吊销：代理 AG-9 已断开并移出设备群", ""},
		{alarm.SourceSystem, alarm.TypeAgentDropping, map[string]string{"health": "1200", "events": "3"},
			"代理无法保存采集到的数据：启动以来丢弃 1,200 条健康报告、3 条事件（队列或本地缓存已满，或磁盘故障）", ""},
		{alarm.SourceWorkOrder, "respond_breach", map[string]string{"order": "WO-7", "due": "2026-12-01T08:00:00Z", "priority": "1"},
			"WO-7：响应时限 2026-12-01 16:00:00 已过（P1）", ""},
		{alarm.SourceWorkOrder, "fix_breach", map[string]string{"order": "WO-7", "due": "2026-12-01T12:00:00Z", "priority": "1"},
			"WO-7：修复时限 2026-12-01 20:00:00 已过（P1）", ""},
		{alarm.SourceSystem, alarm.TypeMetricsDropping, map[string]string{"dropped": "52000", "queue": "50000", "spill": "0", "spill_max": "0", "at": "2026-12-01T08:00:00Z"},
			"时序数据库写入跟不上：已丢弃 52,000 个数据点（内存队列 50,000，落盘缓存 0 / 0 字节），最近一次在 2026-12-01 16:00:00", ""},
		{alarm.SourceSystem, alarm.TypeHistoryDropping, map[string]string{"op": "lost", "lost": "3", "at": "2026-12-01T08:00:00Z"},
			"启动以来丢失 3 条设备状态变化，最近一次在 2026-12-01 16:00:00；可用率报表缺少这些记录", ""},
		{alarm.SourceSystem, alarm.TypeHistoryDropping, map[string]string{"op": "write", "error": "SQLITE_FULL"}, "设备状态变化无法写入：SQLITE_FULL", ""},
		{alarm.SourceSecurity, alarm.TypeAuditFailure, map[string]string{"error": "SQLITE_FULL"}, "审计记录无法写入：SQLITE_FULL", ""},
		{alarm.SourceSecurity, alarm.TypeAuditTampered, map[string]string{"seq": "17", "broken": audit.BrokenHash}, "审计链自第 17 条记录起校验失败：该记录或更早的记录被修改", ""},
	}
	for i := range hubWritten {
		h := &hubWritten[i]
		add(h.src, h.typ, "English words the console must not show")
		a := list[len(list)-1].(map[string]any)
		a["args"], h.id = h.args, a["id"].(string)
	}

	mux := http.NewServeMux()
	dev := cam("CAM-1", "Gate", "unreachable", "Xuhui", 31.2, 121.4)
	dev["agent"], dev["reason"] = "AG-1", "agent_offline"
	mux.HandleFunc("/api/auth/me", serveJSON(map[string]any{"name": "li", "role": "operator", "permissions": []string{"status.read", "alarm.read"}, "csrf": "tok", "session": map[string]any{}}))
	mux.HandleFunc("/api/devices", serveJSON(map[string]any{"devices": []any{dev}, "total": 1}))
	// InfluxDB did not answer: the in-memory window did, with a warning.
	mux.HandleFunc("/api/devices/{id}", serveJSON(map[string]any{"device": dev, "history": map[string]any{
		"device": "CAM-1", "source": metricstore.SourceMemory, "warning": metricstore.FallbackWarning, "samples": []any{}, "transitions": []any{}}}))
	mux.HandleFunc("/api/summary", serveJSON(map[string]any{"devices": 1, "by_status": map[string]int{"unreachable": 1}}))
	mux.HandleFunc("/api/agents", serveJSON(map[string]any{"agents": []any{map[string]any{"id": "AG-1", "site": "S-1", "district": "Xuhui", "status": "offline", "reason": "will", "since": "2026-12-01T00:00:00Z", "version": "1.2.3"}}}))
	mux.HandleFunc("/api/alarms", serveJSON(map[string]any{"alarms": list, "total": len(list)}))
	mux.HandleFunc("/api/alarms/{id}", func(w http.ResponseWriter, r *http.Request) {
		for _, a := range list {
			if a.(map[string]any)["id"] == r.PathValue("id") {
				serveJSON(map[string]any{"alarm": a, "history": []any{}, "children": []any{}})(w, r)
				return
			}
		}
		http.NotFound(w, r)
	})
	srv := serveConsole(t, mux)

	pg := openPage(t)
	if _, err := chromedp.Call(pg.ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: "Asia/Shanghai"}); err != nil {
		t.Fatalf("time zone: %v", err)
	}
	pg.do("open the console", chromedp.EmulateViewport(1440, 900), chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(`#alarms-btn`))
	pg.poll(`window.citywatch.store.loaded && window.citywatch.store.agents.size === 1`, 10*time.Second)
	pg.do("中文", chromedp.Click(`#lang`))
	pg.poll(`document.documentElement.lang === 'zh-CN'`, 5*time.Second)

	latin := regexp.MustCompile(`[A-Za-z_]{2,}`)
	english := func(where, text string) {
		t.Helper()
		for _, w := range latin.FindAllString(text, -1) {
			if !acronyms[w] {
				t.Errorf("%s shows %q: %q", where, w, text)
			}
		}
	}

	pg.do("the device's detail", chromedp.Evaluate[chromedp.Void](`void window.citywatch.activate('CAM-1')`))
	pg.poll(`document.querySelector('#detail:not([hidden]) .kv')`, 5*time.Second)
	if got := pg.str(`[...document.querySelectorAll('#detail dt')].find((dt) => dt.textContent === '代理')?.nextElementSibling.textContent || ''`); !strings.Contains(got, "连接断开") {
		t.Errorf("the device's agent: %q, want its reason 连接断开", got)
	}
	pg.poll(`document.querySelector('#detail .warn')`, 5*time.Second)
	if got := pg.str(`document.querySelector('#detail .src').textContent + ' ' + document.querySelector('#detail .warn').textContent`); got != "数据来源：中心内存 时序数据库未响应：仅显示中心启动以来内存中保留的状态变化" {
		t.Errorf("the device's history source and warning: %q", got)
	}

	pg.do("an agent lost", chromedp.Evaluate[chromedp.Void](`void window.citywatch.changes([{kind: 'agent', seq: 1, at: new Date().toISOString(), from: 'online', to: 'offline', reason: 'heartbeat',
		agent: {id: 'AG-2', site: 'S-2', district: 'Xuhui', status: 'offline', reason: 'heartbeat'}, affected: []}], null)`))
	pg.poll(`document.querySelector('#feed .msg')`, 5*time.Second)
	if got := pg.str(`document.querySelector('#feed .msg').textContent`); !strings.Contains(got, "心跳超时") {
		t.Errorf("feed line %q, want the agent's reason 心跳超时", got)
	}

	// An agent change carries the agent's place and status only: the
	// console keeps the rest of what it has.
	pg.do("an agent back", chromedp.Evaluate[chromedp.Void](`void window.citywatch.changes([{kind: 'agent', seq: 2, at: new Date().toISOString(), from: 'offline', to: 'online',
		agent: {id: 'AG-1', site: 'S-1', district: 'Xuhui', status: 'online', reason: '', since: new Date().toISOString(), devices: 1}}], null)`))
	pg.poll(`window.citywatch.store.agents.get('AG-1').status === 'online'`, 5*time.Second)
	if got := pg.str(`(({status, reason, version}) => [status, reason, version].join('/'))(window.citywatch.store.agents.get('AG-1'))`); got != "online//1.2.3" {
		t.Errorf("AG-1 after its change: %q, want online//1.2.3", got)
	}
	pg.do("open the desk", chromedp.Click(`#alarms-btn`))
	pg.poll(fmt.Sprintf(`document.querySelectorAll('#alarm-list tr').length === %d`, len(list)), 10*time.Second)
	var rows [][2]string
	if err := json.Unmarshal([]byte(pg.str(`JSON.stringify([...document.querySelectorAll('#alarm-list tr')].map((tr) => [tr.dataset.alarm, tr.querySelector('.c-source').textContent]))`)), &rows); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		i := slices.IndexFunc(list, func(a any) bool { return a.(map[string]any)["id"] == r[0] })
		a := list[i].(map[string]any)
		english(fmt.Sprintf("the desk's %s/%s", a["source"], a["type"]), r[1])
		if a["type"] == "camera_offline" && r[1] != "设备离线 摄像机离线" {
			t.Errorf("camera_offline: %q, want 设备离线 摄像机离线", r[1])
		}
	}

	pg.do("the agent_offline alarm's detail", chromedp.Click(fmt.Sprintf(`#alarm-list tr[data-alarm=%q]`, will)))
	pg.poll(`document.querySelector('#alarm-detail .kv')`, 5*time.Second)
	if got := pg.str(`[...document.querySelectorAll('#alarm-detail dt')].find((dt) => dt.textContent === '详情')?.nextElementSibling.textContent || ''`); got != "连接断开" {
		t.Errorf("agent_offline detail %q, want 连接断开", got)
	}
	english("the alarm's severity, state, source and detail", pg.str(`[...document.querySelectorAll('#alarm-detail dt')].filter((dt) => ['级别', '状态', '来源', '详情'].includes(dt.textContent)).map((dt) => dt.nextElementSibling.textContent).join(' ')`))
	// Its node id is an identifier, not English.
	pg.do("the topology alarm's detail", chromedp.Click(fmt.Sprintf(`#alarm-list tr[data-alarm=%q]`, topo["id"])))
	pg.poll(`document.querySelector('#alarm-detail .kv')?.textContent.includes('SW-3')`, 5*time.Second)
	if got := pg.str(`[...document.querySelectorAll('#alarm-detail dt')].find((dt) => dt.textContent === '详情')?.nextElementSibling.textContent || ''`); got != "交换机 SW-3 故障 — 3 台设备离线" {
		t.Errorf("topology detail %q, want 交换机 SW-3 故障 — 3 台设备离线", got)
	}
	for _, h := range hubWritten {
		pg.do(h.typ+"'s detail", chromedp.Click(fmt.Sprintf(`#alarm-list tr[data-alarm=%q]`, h.id)))
		pg.poll(fmt.Sprintf(`document.querySelector('#alarm-detail')?.dataset.alarm === %q || [...document.querySelectorAll('#alarm-detail dd')].some((dd) => dd.textContent === %q)`, h.id, h.want), 5*time.Second)
		if got := pg.str(`[...document.querySelectorAll('#alarm-detail dt')].find((dt) => dt.textContent === '详情')?.nextElementSibling.textContent || ''`); got != h.want {
			t.Errorf("%s/%s detail %q, want %q", h.src, h.typ, got, h.want)
		}
	}
	pg.noExceptions()
}
