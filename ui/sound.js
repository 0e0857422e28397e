// A soft two-note tone for devices going offline, made with WebAudio (no
// audio files). Off by a toggle that is remembered; throttled so a wave of
// failures is one tone, not a siren.

const STORE_KEY = 'citywatch.sound';
const MIN_GAP_MS = 4000;

// ALARM_TONES are the notes [Hz, start s] of a new alarm by severity.
const ALARM_TONES = {
  critical: [[523.25, 0], [659.25, 0.14], [880, 0.28], [523.25, 0.7], [659.25, 0.84], [880, 0.98]],
  major: [[440, 0], [587.33, 0.16]],
};

export class Sound {
  // onState follows every change of whether sound can play (blocked);
  // onBlocked is told when a tone was due but the browser kept it silent.
  constructor({ onState = () => {}, onBlocked = () => {} } = {}) {
    let saved = null;
    try { saved = localStorage.getItem(STORE_KEY); } catch { /* ignore */ }
    this.enabled = saved !== 'off';
    this.ctx = null;
    this.last = 0;
    this.onState = onState;
    this.onBlocked = onBlocked;
    // The context is made at once, so that its state says whether the
    // browser lets this page play sound before the operator touches it
    // (most do not: a console opened on a wall screen stays silent until
    // clicked, and the console says so). Any gesture unlocks it.
    const AC = window.AudioContext || window.webkitAudioContext;
    if (AC) {
      try {
        this.ctx = new AC();
        this.ctx.addEventListener('statechange', () => this.onState());
      } catch (err) {
        console.warn('sound:', err);
      }
    }
    const unlock = () => {
      this.unlock();
      if (!this.blocked) {
        window.removeEventListener('pointerdown', unlock, true);
        window.removeEventListener('keydown', unlock, true);
      }
    };
    window.addEventListener('pointerdown', unlock, true);
    window.addEventListener('keydown', unlock, true);
  }

  // blocked: sound is on, but the browser does not let it play yet.
  get blocked() { return this.enabled && !!this.ctx && this.ctx.state !== 'running'; }

  unlock() {
    if (this.ctx?.state === 'suspended') this.ctx.resume().catch((err) => console.warn('sound:', err));
  }

  toggle() {
    this.enabled = !this.enabled;
    try { localStorage.setItem(STORE_KEY, this.enabled ? 'on' : 'off'); } catch { /* ignore */ }
    if (this.enabled) { this.unlock(); this.play(true); }
    this.onState();
    return this.enabled;
  }

  // play sounds the tone unless muted, locked, or played a moment ago.
  play(force = false) { this.tone([[659.25, 0], [523.25, 0.18]], force); }

  // alarm sounds a new alarm's tone by its severity, each throttled on its
  // own: critical, three rising notes twice; major, two rising notes once;
  // minor and warning alarms are silent (the desk's count and the feed
  // show them), so that a night's small faults do not wear the operators'
  // attention down before the one that matters.
  alarm(severity) {
    const notes = ALARM_TONES[severity];
    if (!notes) return;
    const now = Date.now();
    this.lastAlarm ??= {};
    if (now - (this.lastAlarm[severity] || 0) < MIN_GAP_MS) return;
    if (this.tone(notes, true)) this.lastAlarm[severity] = now;
  }

  tone(notes, force) {
    const now = Date.now();
    if (this.blocked) this.onBlocked();
    if (!this.enabled || !this.ctx || this.ctx.state !== 'running') return false;
    if (!force && now - this.last < MIN_GAP_MS) return false;
    this.last = now;
    const t0 = this.ctx.currentTime;
    notes.forEach(([freq, at]) => {
      const osc = this.ctx.createOscillator();
      const gain = this.ctx.createGain();
      osc.type = 'sine';
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, t0 + at);
      gain.gain.exponentialRampToValueAtTime(0.08, t0 + at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t0 + at + 0.35);
      osc.connect(gain).connect(this.ctx.destination);
      osc.start(t0 + at);
      osc.stop(t0 + at + 0.4);
    });
    return true;
  }
}
