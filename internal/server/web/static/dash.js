// zerodown dashboard: makes the server-rendered pages live. Every page
// works without it; this swaps in fresh parts rendered by the server, so
// the page and its updates come from the same templates.
(function () {
	'use strict';

	const $ = (id) => document.getElementById(id);
	const csrf = () => { const m = document.querySelector('meta[name="csrf-token"]'); return m ? m.content : ''; };

	function el(tag, cls, text) {
		const e = document.createElement(tag);
		if (cls) e.className = cls;
		if (text !== undefined) e.textContent = text;
		return e;
	}

	// Times come in UTC from the server; show them in the browser's zone.
	// The formatters are made once: a run page has hundreds of times.
	const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' });
	const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
	const today = new Date().toDateString();
	function fmtTime(d) {
		return (d.toDateString() === today ? timeOnly : dateTime).format(d);
	}
	function localTimes(root) {
		root.querySelectorAll('time[datetime]').forEach((t) => {
			const d = new Date(t.getAttribute('datetime'));
			if (!isNaN(d)) { t.title = t.textContent; t.textContent = fmtTime(d); }
		});
	}

	// Parts are elements with an id and data-part. A fresh one replaces
	// the page's only when the server's HTML changed, so focus, selection
	// and screen readers are left alone otherwise.
	const seen = new Map();
	document.querySelectorAll('[data-part]').forEach((p) => seen.set(p.id, p.innerHTML));
	localTimes(document);

	function swapParts(html) {
		const tpl = document.createElement('template');
		tpl.innerHTML = html;
		tpl.content.querySelectorAll('[data-part]').forEach((n) => {
			const cur = $(n.id);
			if (!cur || seen.get(n.id) === n.innerHTML) return;
			seen.set(n.id, n.innerHTML);
			const active = document.activeElement;
			const hadFocus = cur.contains(active) && active !== cur;
			const focusID = hadFocus ? active.id : '';
			cur.innerHTML = n.innerHTML;
			cur.className = n.className;
			for (const k in n.dataset) cur.dataset[k] = n.dataset[k];
			localTimes(cur);
			tick();
			if (hadFocus) {
				// Keep the keyboard where it was, or close to it.
				const again = focusID && $(focusID);
				(again || focusTarget()).focus();
			}
		});
	}
	function focusTarget() { return $('run-status') || $('main'); }

	// What runs shows how long it has, counted here from its start: the
	// server's parts carry only the start, so they stay the same while
	// nothing but time passes.
	function fmtDur(ms) {
		const s = Math.max(0, ms) / 1000;
		if (s < 1) return Math.floor(ms) + 'ms';
		if (s < 10) return s.toFixed(1) + 's';
		if (s < 60) return Math.floor(s) + 's';
		if (s < 3600) return Math.floor(s / 60) + 'm' + String(Math.floor(s % 60)).padStart(2, '0') + 's';
		return Math.floor(s / 3600) + 'h' + String(Math.floor((s % 3600) / 60)).padStart(2, '0') + 'm';
	}
	function tick() {
		const now = Date.now();
		document.querySelectorAll('[data-since]').forEach((e) => { e.textContent = fmtDur(now - Date.parse(e.dataset.since)); });
	}
	tick();
	setInterval(tick, 1000);

	async function refresh(url) {
		const res = await fetch(url, { headers: { Accept: 'text/html' }, credentials: 'same-origin' });
		if (res.status === 401) { location.reload(); return; } // the session ended: the page asks to sign in
		if (!res.ok) throw new Error(url + ': ' + res.status);
		swapParts(await res.text());
	}

	function say(msg) {
		const m = $('action-msg');
		if (!m) return;
		m.textContent = msg;
		m.hidden = !msg;
	}

	// The run buttons post to the API with the session's CSRF token; the
	// forms post to the dashboard without this script.
	document.addEventListener('submit', async (e) => {
		const f = e.target;
		if (!f.dataset || !f.dataset.api) return;
		e.preventDefault();
		const btn = f.querySelector('button');
		if (btn) btn.disabled = true;
		say('');
		try {
			const res = await fetch(f.dataset.api, { method: 'POST', credentials: 'same-origin', headers: { 'X-CSRF-Token': csrf() } });
			const body = await res.json().catch(() => ({}));
			if (!res.ok) {
				say((body.error && body.error.message) || res.status + ' ' + res.statusText);
				if (btn) btn.disabled = false;
				return;
			}
			if (f.id === 'rollback' && body.run) { location.href = '/runs/' + encodeURIComponent(body.run.id); return; }
			if (body.nothing_to_do) say('Nothing to do: every host already runs that version and is healthy.');
			if (run) await liveNow();
			focusTarget().focus();
		} catch (err) {
			say(String(err));
			if (btn) btn.disabled = false;
		}
	});

	// The environments page asks for each environment's hosts every second.
	document.querySelectorAll('section.env[data-live]').forEach((sec) => {
		const tick = () => refresh(sec.dataset.live).catch(() => {}).finally(() => setTimeout(tick, 1000));
		setTimeout(tick, 1000);
	});

	// The run page follows the run's event stream.
	const run = $('run');
	let liveNow = async () => {};

	function runPage() {
		const eventsURL = run.dataset.events;
		let last = Number(run.dataset.after) || 0;
		const charts = $('charts');
		const rows = JSON.parse(charts.dataset.rows || '[]');
		const list = $('events');
		draw(rows);

		let drawPending = false;
		const drawSoon = () => {
			if (drawPending) return;
			drawPending = true;
			requestAnimationFrame(() => { drawPending = false; draw(rows); });
		};

		// The live part is fetched at most every 100 ms, however many
		// events come, and once more after the last.
		let timer = 0, busy = false, again = false;
		const liveSoon = () => { if (!timer) timer = setTimeout(live, 100); };
		async function live() {
			clearTimeout(timer);
			timer = 0;
			if (busy) { again = true; return; }
			busy = true;
			try { await refresh(run.dataset.live); } catch (e) { /* the next event tries again */ }
			busy = false;
			if (again) { again = false; liveSoon(); }
		}
		liveNow = live;

		// The log follows new events while it is scrolled to its end. Where
		// it is scrolled is read on scrolling, not on each event, which
		// would lay the page out once per event.
		let stick = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
		let sticking = false;
		list.addEventListener('scroll', () => { if (!sticking) stick = list.scrollHeight - list.scrollTop - list.clientHeight < 40; sticking = false; }, { passive: true });
		let scrollPending = false;
		const scrollSoon = () => {
			if (!stick || scrollPending) return;
			scrollPending = true;
			requestAnimationFrame(() => { scrollPending = false; sticking = true; list.scrollTop = list.scrollHeight; });
		};
		function addEvent(ev) {
			const li = el('li', 'ev ev-' + ev.type);
			li.dataset.seq = ev.seq;
			const t = el('time');
			t.dateTime = ev.at;
			t.textContent = fmtTime(new Date(ev.at));
			li.append(t, ' ', el('span', 'etype', ev.type));
			if (ev.host) li.append(' ', el('span', 'ehost', ev.host));
			li.append(' ', el('span', 'emsg', ev.message));
			list.append(li);
			scrollSoon();
		}

		function apply(ev) {
			last = ev.seq;
			if (ev.type === 'verify') {
				if (ev.data) rows.push(ev.data);
				drawSoon();
			} else {
				addEvent(ev);
				liveSoon();
			}
			document.dispatchEvent(new CustomEvent('zerodown:event', { detail: ev }));
		}

		// Events are taken one at a time, in order. A gap in the seqs is an
		// event of a type this page does not listen for: the journal has it.
		async function catchUp(before) {
			const res = await fetch(eventsURL + '?after=' + last, { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
			if (!res.ok) return;
			for (const e of await res.json()) if (e.seq > last && !(before && e.seq >= before)) apply(e);
		}
		let chain = Promise.resolve();
		const take = (ev) => {
			chain = chain.then(async () => {
				if (ev.seq <= last) return;
				if (ev.seq > last + 1) await catchUp(ev.seq).catch(() => {});
				apply(ev);
			});
		};

		if ($('run-status').dataset.status !== 'running') return;
		const es = new EventSource(eventsURL + '?after=' + last);
		const onEvent = (m) => { try { take(JSON.parse(m.data)); } catch (e) { /* not an event */ } };
		run.dataset.types.split(' ').forEach((t) => es.addEventListener(t, onEvent));
		es.addEventListener('end', () => {
			es.close();
			chain = chain.then(() => catchUp().catch(() => {})).then(live);
		});
		es.onerror = () => {
			if (es.readyState === EventSource.CLOSED) say('Live updates stopped: reload the page.');
		};
	}

	// Charts: inline SVG drawn from the verifier's per-second samples.
	const W = 420, H = 150, L = 36, R = 6, T = 8, B = 18;
	const SVG = 'http://www.w3.org/2000/svg';
	function svgEl(tag, attrs, text) {
		const e = document.createElementNS(SVG, tag);
		for (const k in attrs) e.setAttribute(k, attrs[k]);
		if (text !== undefined) e.textContent = text;
		return e;
	}
	const num = (n) => (Math.round(n * 10) / 10).toLocaleString();

	// chart draws series of per-row values: lines, or bars stacked.
	function chart(id, rows, series, stacked, unit, summary) {
		const fig = $('chart-' + id);
		if (!fig) return;
		const svg = fig.querySelector('svg');
		const span = Math.max(10, ...rows.map((r) => r.t + (r.seconds || 1)));
		let top = 0;
		rows.forEach((r) => {
			const vals = series.map((s) => s.value(r));
			top = Math.max(top, stacked ? vals.reduce((a, b) => a + b, 0) : Math.max(0, ...vals));
		});
		top = top > 0 ? top * 1.1 : 1;
		const x = (t) => L + (t / span) * (W - L - R);
		const y = (v) => H - B - (v / top) * (H - T - B);
		const parts = [
			svgEl('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }),
			svgEl('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }),
			svgEl('text', { x: L - 4, y: T + 8, 'text-anchor': 'end' }, num(top)),
			svgEl('text', { x: L - 4, y: H - B, 'text-anchor': 'end' }, '0'),
			svgEl('text', { x: L, y: H - 4 }, '0s'),
			svgEl('text', { x: W - R, y: H - 4, 'text-anchor': 'end' }, span + 's'),
		];
		if (stacked) {
			rows.forEach((r) => {
				const sec = r.seconds || 1;
				let base = 0;
				series.forEach((s, i) => {
					const v = s.value(r);
					if (v <= 0) return;
					parts.push(svgEl('rect', { class: 'c' + (i % 6), x: x(r.t), width: Math.max(1, x(r.t + sec) - x(r.t) - 0.5), y: y(base + v), height: y(base) - y(base + v) }));
					base += v;
				});
			});
		} else {
			series.forEach((s, i) => {
				// Steps: each sample holds its value over the seconds it covers.
				const pts = [];
				rows.forEach((r) => { const v = y(s.value(r)).toFixed(1); pts.push(x(r.t).toFixed(1) + ',' + v, x(r.t + (r.seconds || 1)).toFixed(1) + ',' + v); });
				if (pts.length) parts.push(svgEl('polyline', { class: 'l c' + (i % 6), points: pts.join(' ') }));
			});
		}
		svg.replaceChildren(...parts);
		const legend = fig.querySelector('.legend');
		legend.replaceChildren(...series.map((s, i) => { const li = el('li'); li.append(el('span', 'sw c' + (i % 6)), s.name); return li; }));
		fig.querySelector('.sr').textContent = summary;
	}

	function draw(rows) {
		if (!$('chart-rate')) return;
		$('chart-grid').hidden = rows.length === 0;
		const per = (r, v) => v / (r.seconds || 1);
		const lastRow = rows[rows.length - 1] || {};
		const keysOf = (field) => { const ks = []; rows.forEach((r) => Object.keys(r[field] || {}).forEach((k) => { if (!ks.includes(k)) ks.push(k); })); return ks; };
		let sent = 0, ok = 0, failed = 0, worst = 0;
		rows.forEach((r) => { sent += r.sent || 0; ok += r.ok || 0; failed += r.failed || 0; worst = Math.max(worst, r.p99_ms || 0); });
		const outcomes = keysOf('failures');
		const versions = keysOf('versions');
		if (rows.length) {
			$('verify-sum').textContent = rows.length + ' one-second samples: ' + sent.toLocaleString() + ' requests sent, ' +
				ok.toLocaleString() + ' answered well, ' + failed.toLocaleString() + ' failed; worst p99 ' + num(worst) + ' ms.';
		}
		chart('rate', rows, [
			{ name: 'sent/s', value: (r) => per(r, r.sent || 0) },
			{ name: 'ok/s', value: (r) => per(r, r.ok || 0) },
		], false, '/s', rows.length ? 'Last second: ' + num(per(lastRow, lastRow.sent || 0)) + ' sent, ' + num(per(lastRow, lastRow.ok || 0)) + ' answered well.' : 'No samples yet.');
		const fails = outcomes.map((o) => ({ name: o, value: (r) => per(r, (r.failures || {})[o] || 0) }));
		chart('failures', rows, fails.length ? fails : [{ name: 'failed/s', value: (r) => per(r, r.failed || 0) }], fails.length > 0, '/s',
			failed ? failed + ' failed: ' + outcomes.map((o) => o + ' ' + rows.reduce((a, r) => a + ((r.failures || {})[o] || 0), 0)).join(', ') + '.' : 'No failed request.');
		chart('p99', rows, [{ name: 'p99 ms', value: (r) => r.p99_ms || 0 }], false, 'ms',
			rows.length ? 'p99 in the last second ' + num(lastRow.p99_ms || 0) + ' ms; worst ' + num(worst) + ' ms.' : 'No samples yet.');
		chart('versions', rows, versions.map((v) => ({ name: v, value: (r) => per(r, (r.versions || {})[v] || 0) })), true, '/s',
			rows.length ? 'Last second: ' + (versions.map((v) => v + ' ' + ((lastRow.versions || {})[v] || 0)).join(', ') || 'no answers') + '.' : 'No samples yet.');
	}

	if (run) runPage(); // last: it draws with the constants above
})();
