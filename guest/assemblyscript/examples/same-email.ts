// Example (a): two OAuth logins (say Google and GitHub, as two
// sub-verifiers) that must name the same verified email. The user is that
// email, in lower case.
import { accept, asciiLower, claim, refuse, subCount } from "../sdk/quorumkey";

export function verify(): i32 {
  if (subCount() != 2) {
    refuse("sign in with both providers");
    return 1;
  }
  const first = claim(0, "email");
  const second = claim(1, "email");
  if (first == null || second == null) {
    refuse("both logins must carry an email");
    return 1;
  }
  if (claim(0, "email_verified") != "true" || claim(1, "email_verified") != "true") {
    refuse("both emails must be verified by their provider");
    return 1;
  }
  const email = asciiLower(first);
  if (email != asciiLower(second)) {
    refuse("the two logins name different emails");
    return 1;
  }
  accept(email);
  return 0;
}
