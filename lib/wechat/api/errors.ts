/**
 * WeChat's error codes in words an agent or an admin can act on, and what each means for a retry.
 *
 * Sources: docs/protocol/wechat.md §13 (official 全局返回码 as copied by WxJava, niefy and microapplet; the
 * getAccessToken and typing tables). Branch on `errcode`, never on `errmsg` (WeChat appends `hint: […]`).
 */

/**
 * How a code is handled:
 * - `busy`:   WeChat is busy or a rate limit hit; try again later (with back-off).
 * - `token`:  the access token is invalid or expired; refresh it and retry once.
 * - `user`:   the user's state forbids it (48-hour window, quota, unfollowed, blocked); not until the user acts.
 * - `config`: the account's setup (AppSecret, IP whitelist, permissions); an admin must fix it.
 * - `content`: the message itself (too long, bad media, bad template); fix the message.
 */
export type WechatErrorKind = 'busy' | 'token' | 'user' | 'config' | 'content';

export interface WechatErrorInfo {
  kind: WechatErrorKind;
  /** Words for an agent/admin, English. No trailing period; the code is appended by callers. */
  en: string;
  /** The same in Chinese. */
  zh: string;
  /** Worth trying again later without anyone acting (informational; `busy` codes are retried automatically). */
  retryable: boolean;
  /** Suggested wait before the next try, ms (rate limits). */
  retryAfterMs?: number;
}

const E = (
  kind: WechatErrorKind,
  en: string,
  zh: string,
  retryable = kind === 'busy',
  retryAfterMs?: number,
): WechatErrorInfo =>
  retryAfterMs === undefined ? { kind, en, zh, retryable } : { kind, en, zh, retryable, retryAfterMs };

/** The codes the pack can meet on the token, send, typing, template and media APIs. */
export const WECHAT_ERRORS: Readonly<Record<number, WechatErrorInfo>> = {
  [-1]: E('busy', 'WeChat is busy; the message will be tried again', '微信系统繁忙，稍后将重试'),
  40001: E(
    'token',
    'the access token was not accepted (another server may have refreshed it, or the AppSecret is wrong)',
    'access_token 无效（可能被其他服务器刷新，或 AppSecret 错误）',
  ),
  40002: E('config', 'the token request used an invalid grant type', '不合法的凭证类型'),
  40003: E(
    'user',
    'the recipient is not a follower of this Official Account (invalid openid)',
    '接收者 openid 不合法，或不是本公众号的粉丝',
  ),
  40004: E('content', 'WeChat does not accept this media type', '不合法的媒体文件类型'),
  40005: E('content', 'WeChat does not accept this file format', '不合法的文件类型'),
  40006: E('content', 'the file size is not accepted', '不合法的文件大小'),
  40007: E(
    'content',
    'the media id is invalid or has expired (temporary media lasts 3 days)',
    '媒体文件 id 不合法或已过期（临时素材有效期 3 天）',
  ),
  40008: E('content', 'WeChat does not accept this message type', '不合法的消息类型'),
  40009: E('content', 'the image is too large', '图片文件大小不合法'),
  40010: E('content', 'the voice file is too large or too long', '语音文件大小不合法'),
  40011: E('content', 'the video is too large', '视频文件大小不合法'),
  40012: E('content', 'the thumbnail is too large', '缩略图文件大小不合法'),
  40013: E(
    'config',
    'the AppID is not valid; check it in the account settings',
    'AppID 不合法，请检查 AppID 是否正确',
  ),
  40014: E('token', 'the access token is not valid', '不合法的 access_token'),
  40033: E(
    'content',
    'the request contained \\u-escaped characters',
    '不合法的请求字符，不能包含 \\uxxxx 格式的字符',
  ),
  40037: E('content', 'the template id is not valid', '不合法的模板 id'),
  40125: E(
    'config',
    'the AppSecret is not valid; copy it again from the WeChat Official Accounts Platform',
    'AppSecret 无效，请从微信公众平台重新复制',
  ),
  40164: E(
    'config',
    "this server's IP is not on the account's IP whitelist; add it under Settings and Development → Basic Configuration → IP whitelist",
    '调用接口的 IP 地址不在白名单中，请在 设置与开发 → 基本配置 → IP 白名单 中添加本服务器 IP',
  ),
  40243: E(
    'config',
    'the AppSecret is frozen; unfreeze it on the WeChat Official Accounts Platform',
    'AppSecret 已被冻结，请登录公众平台解冻',
  ),
  41001: E('config', 'the access token was missing from the request', '缺少 access_token 参数'),
  41002: E('config', 'the AppID is missing', '缺少 appid 参数'),
  41004: E('config', 'the AppSecret is missing', '缺少 secret 参数'),
  41005: E('content', 'the media file is missing from the upload', '缺少多媒体文件数据'),
  42001: E('token', 'the access token has expired', 'access_token 已过期'),
  43004: E(
    'user',
    'the customer has unfollowed the Official Account and cannot receive messages',
    '用户未关注公众号，无法接收消息',
  ),
  43019: E('user', 'the customer is on the account’s blacklist', '用户在公众号黑名单中'),
  44001: E('content', 'the media file is empty', '多媒体文件为空'),
  44002: E('content', 'the request body was empty', 'POST 的数据包为空'),
  44004: E('content', 'the text is empty', '文本消息内容为空'),
  45001: E('content', 'the media file is too large', '多媒体文件大小超过限制'),
  45002: E('content', 'the message is too long', '消息内容超过限制'),
  45008: E(
    'content',
    'a news message may carry only one article',
    '图文消息超过限制（客服消息只能发送 1 条图文）',
  ),
  45009: E(
    'busy',
    "the account's daily API quota is used up; sending resumes tomorrow (or after an admin clears the quota)",
    '接口调用超过每日上限，明天恢复（或由管理员清零额度）',
    true,
    60 * 60_000,
  ),
  45011: E(
    'busy',
    'too many calls this minute; the message will be tried again',
    'API 调用太频繁，稍后将重试',
    true,
    60_000,
  ),
  45015: E(
    'user',
    'the customer has not written in the last 48 hours (or has unfollowed), so they cannot be answered until they write again',
    '用户超过 48 小时未发消息（或已取消关注），需等待用户再次发消息后才能回复',
  ),
  45047: E(
    'user',
    'the five replies allowed per customer message are used up; wait for the customer to write again',
    '客服消息下发条数已达上限（每条用户消息最多 5 条回复），请等待用户再次发消息',
  ),
  45072: E('content', 'the typing command is not valid', 'command 字段取值不对'),
  45080: E(
    'user',
    'typing can only be shown within 30 seconds of an exchange with the customer',
    '下发输入状态需要之前 30 秒内与用户有过消息交互',
  ),
  45081: E('user', 'the typing indicator is already showing', '已经在输入状态，不可重复下发'),
  45086: E('content', 'the text contains an invalid mini-program link', '文本中的小程序链接不合法'),
  45087: E(
    'config',
    'customer-service messages from this account have been blocked by WeChat',
    '该公众号的客服消息已被封禁',
  ),
  45098: E('content', 'the menu has too many options', 'msgmenu 选项过多'),
  45099: E('content', 'a menu option is too long', 'msgmenu 选项内容过长'),
  46001: E('content', 'the media does not exist', '媒体数据不存在'),
  47001: E('content', 'WeChat could not parse the request', '解析 JSON/XML 内容错误'),
  47003: E('content', 'the template data is not valid', '模板参数不准确'),
  48001: E(
    'config',
    'this account is not authorised for this API (it may need to be a verified Service Account)',
    '公众号未获得该接口权限（可能需要认证服务号）',
  ),
  48002: E(
    'user',
    'the customer has switched off "Receive messages" for this Official Account',
    '用户已在公众号设置中关闭“接收消息”',
  ),
  48004: E(
    'config',
    'this API is banned for the account; see mp.weixin.qq.com',
    'API 接口被封禁，请登录公众平台查看',
  ),
  48008: E('config', 'the account may not send this message type', '没有该类型消息的发送权限'),
  50001: E('config', 'the user or account is not authorised for this API', '用户未授权该 API'),
  50002: E('user', "the customer's account is restricted", '用户受限'),
  50005: E('user', 'the customer does not follow the Official Account', '用户未关注公众号'),
  61452: E('content', 'the customer-service account (kf_account) is not valid', '无效客服账号'),
  65401: E('content', 'the customer-service account (kf_account) is not valid', '无效客服账号'),
  89501: E(
    'config',
    "this server's IP is waiting for an admin to approve it on WeChat",
    '此 IP 正在等待管理员确认',
  ),
  89503: E(
    'config',
    "calls from this server's IP need an admin's approval on WeChat",
    '此 IP 调用需要管理员确认',
  ),
  89506: E(
    'config',
    "an admin refused this server's IP twice; it is blocked for 24 hours",
    '该 IP 被管理员拒绝两次，24 小时内不可调用',
  ),
  89507: E(
    'config',
    "an admin refused this server's IP; it is blocked for 1 hour",
    '该 IP 被管理员拒绝，1 小时内不可调用',
  ),
};

/** The codes that mean "refresh the access token and retry once" (WxJava's ACCESS_TOKEN_ERROR_CODES). */
export const TOKEN_ERROR_CODES: ReadonlySet<number> = new Set([40001, 40014, 42001]);

export type Lang = 'en' | 'zh';

/** Words for `errcode`; for an unknown code, WeChat's own errmsg (cut, without its hint) is quoted. */
export function describeErrcode(errcode: number, errmsg?: string, lang: Lang = 'en'): string {
  const info = WECHAT_ERRORS[errcode];
  if (info) return info[lang];
  const raw = cleanErrmsg(errmsg);
  if (lang === 'zh') return raw ? `微信返回错误：${raw}` : '微信返回未知错误';
  return raw ? `WeChat answered "${raw}"` : 'WeChat answered with an unknown error';
}

/** WeChat's errmsg without the `hint: […]` suffix and any `rid:`, bounded, and with no URL query strings. */
export function cleanErrmsg(errmsg: unknown): string {
  if (typeof errmsg !== 'string') return '';
  return errmsg
    .replace(/\s*,?\s*(hint|rid):.*$/i, '')
    .replace(/\?[^\s]*/g, '')
    .trim()
    .slice(0, 200);
}

/** The handling class of a code; unknown codes are treated as refusals about the content (not retried). */
export function kindOf(errcode: number): WechatErrorKind {
  return WECHAT_ERRORS[errcode]?.kind ?? 'content';
}
