// A soft two-note tone for devices going offline, made with WebAudio (no
// audio files). Off by a toggle that is remembered; throttled so a wave of
// failures is one tone, not a siren.

const STORE_KEY = 'citywatch.sound';
const MIN_GAP_MS = 4000;

export class Sound {
  constructor() {
    let saved = null;
    try { saved = localStorage.getItem(STORE_KEY); } catch { /* ignore */ }
    this.enabled = saved !== 'off';
    this.ctx = null;
    this.last = 0;
    // Browsers allow audio only after a user gesture; take the first one.
    const unlock = () => this.unlock();
    window.addEventListener('pointerdown', unlock, { once: true, capture: true });
    window.addEventListener('keydown', unlock, { once: true, capture: true });
  }

  unlock() {
    const AC = window.AudioContext || window.webkitAudioContext;
    if (!AC) return;
    try {
      this.ctx ??= new AC();
      if (this.ctx.state === 'suspended') this.ctx.resume();
    } catch (err) {
      console.warn('sound:', err);
    }
  }

  toggle() {
    this.enabled = !this.enabled;
    try { localStorage.setItem(STORE_KEY, this.enabled ? 'on' : 'off'); } catch { /* ignore */ }
    if (this.enabled) { this.unlock(); this.play(true); }
    return this.enabled;
  }

  // play sounds the tone unless muted, locked, or played a moment ago.
  play(force = false) { this.tone([[659.25, 0], [523.25, 0.18]], force); }

  // critical is the distinct tone for a new critical alarm: three rising
  // notes, twice, throttled on its own.
  critical() {
    const now = Date.now();
    if (now - (this.lastCritical || 0) < MIN_GAP_MS) return;
    if (this.tone([[523.25, 0], [659.25, 0.14], [880, 0.28], [523.25, 0.7], [659.25, 0.84], [880, 0.98]], true)) this.lastCritical = now;
  }

  tone(notes, force) {
    const now = Date.now();
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
