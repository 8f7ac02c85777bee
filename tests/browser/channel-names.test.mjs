// The JS client's channel-name rule against the table the C unit test
// (tests/unit/test_channel.c, insite_channel_name_valid) reads too, so the
// two cannot drift apart.   node --test tests/browser/channel-names.test.mjs
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { channelNameValid } from '../../clients/js/insite-client.js';

const table = JSON.parse(readFileSync(new URL('../fixtures/channel_names.json', import.meta.url), 'utf8'));

describe('channel names (tests/fixtures/channel_names.json)', () => {
  it('accepts every valid name', () => {
    assert.ok(table.valid.length > 5);
    for (const n of table.valid) assert.equal(channelNameValid(n), true, JSON.stringify(n));
  });
  it('refuses every invalid name', () => {
    assert.ok(table.invalid.length > 5);
    for (const n of table.invalid) assert.equal(channelNameValid(n), false, JSON.stringify(n));
  });
  it('refuses what is not a string', () => {
    for (const n of [null, undefined, 42, ['a'], { a: 1 }]) assert.equal(channelNameValid(n), false);
  });
});
