/** Checks of an Official Account's settings, shared by the wechat-config runtime and its test route. */

/** `wx` and 16 hexadecimal characters. */
export const APPID_RE = /^wx[0-9a-f]{16}$/i;
/** 43 letters and digits (base64 of 32 bytes without its `=`). */
export const AESKEY_RE = /^[A-Za-z0-9]{43}$/;
/** An http(s) URL without spaces. */
export const API_BASE_RE = /^https?:\/\/[^\s/]+(:\d+)?(\/[^\s]*)?$/;

export type ConfigProblem = 'appId' | 'apiBase' | 'appSecret' | 'encodingAESKey';

/** What is wrong with an account's settings (empty when nothing). */
export function configProblems(
  appId: string,
  apiBase: string,
  creds: { appSecret?: string; encodingAESKey?: string },
): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  if (!APPID_RE.test(appId)) out.push('appId');
  if (!API_BASE_RE.test(apiBase)) out.push('apiBase');
  if (!creds.appSecret) out.push('appSecret');
  if (creds.encodingAESKey && !AESKEY_RE.test(creds.encodingAESKey)) out.push('encodingAESKey');
  return out;
}
