// Server-Sent Events parsed by hand, for the console's live feed
// (console.js): EventSource cannot send an Authorization header, so the page
// reads the stream with fetch and feeds its text here, chunk by chunk. Kept
// apart so the browser test can feed it chunks split at awkward places.
'use strict';
(() => {
  // Lines end in CRLF, LF or CR; a message ends at a blank line and is
  // handed on when it has data; `:` lines are comments. `done` marks the end
  // of the stream.
  function parser(onMessage) {
    let buffer = '';
    let message = { data: [], event: 'message', id: null };
    return (chunk, done) => {
      buffer += chunk;
      // A CR at the very end may be the first half of a CRLF: held back.
      const held = !done && buffer.endsWith('\r');
      const lines = (held ? buffer.slice(0, -1) : buffer).split(/\r\n|\n|\r/);
      buffer = done ? '' : lines.pop() + (held ? '\r' : '');
      for (const line of lines) {
        if (line === '') {
          if (message.data.length) onMessage(message);
          message = { data: [], event: 'message', id: null };
        } else if (!line.startsWith(':')) {
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? '' : line.slice(colon + 1);
          if (value.startsWith(' ')) value = value.slice(1);
          if (field === 'data') message.data.push(value);
          else if (field === 'event') message.event = value;
          else if (field === 'id') message.id = value;
        }
      }
    };
  }
  window.AccountsSse = Object.freeze({ parser });
})();
