// Scores the corpus (stdin, one JSON string a line) with the npm package
// vader-sentiment N times and prints {"sentences","seconds","per_sec"}.
//   node bench/analytics/vader_js.js MODULE_DIR ROUNDS < corpus.jsonl
const fs = require('fs');
const vader = require(process.argv[2]);
const rounds = parseInt(process.argv[3] || '5', 10);
const corpus = fs.readFileSync(0, 'utf8').split('\n').filter(Boolean).map(JSON.parse);
const sia = vader.SentimentIntensityAnalyzer;
let sink = 0;
for (const t of corpus) sink += sia.polarity_scores(t).compound;   // warm-up
const t0 = process.hrtime.bigint();
for (let r = 0; r < rounds; r++)
  for (const t of corpus) sink += sia.polarity_scores(t).compound;
const s = Number(process.hrtime.bigint() - t0) / 1e9;
const n = corpus.length * rounds;
console.log(JSON.stringify({ sentences: n, seconds: +s.toFixed(3), per_sec: Math.round(n / s), checksum: sink }));
