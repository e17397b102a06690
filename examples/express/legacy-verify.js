// While services move over, Tessera can sign HS256 with the old app's
// ACCESS_TOKEN_SECRET: the old services' check — the tutorial's
// `jwt.verify(token, process.env.ACCESS_TOKEN_SECRET)` with `jsonwebtoken` —
// keeps accepting the tokens, and `legacy_id` (enable it with
// TESSERA_ACCESS_TOKEN_CLAIMS=email,username,fullname,legacy_id) carries the
// MongoDB `_id` that `User.findById(decoded._id)` used to read.
//
//   ACCESS_TOKEN_SECRET=... node legacy-verify.js "$ACCESS_TOKEN"
//
// prints the fields the old code read, under their old names.
import jwt from 'jsonwebtoken';

const token = process.argv[2];
if (!token || !process.env.ACCESS_TOKEN_SECRET) {
  console.error('usage: ACCESS_TOKEN_SECRET=... node legacy-verify.js TOKEN');
  process.exit(2);
}
try {
  const decoded = jwt.verify(token, process.env.ACCESS_TOKEN_SECRET);
  console.log(
    JSON.stringify({
      _id: decoded.legacy_id ?? decoded.sub,
      email: decoded.email,
      username: decoded.username,
      fullName: decoded.fullname,
    }),
  );
} catch (e) {
  console.error(`rejected: ${e.message}`);
  process.exit(1);
}
