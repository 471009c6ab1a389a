/**
 * The WeChat Official Account API as wechat-config and wechat-out use it (and wechat-in, for media downloads).
 *
 * Entry point for other nodes: `config.api` on a running wechat-config node is a `WechatApi`;
 * `config.api.getMedia(mediaId)` downloads temporary media.
 */
export { WechatApi, type WechatApiOptions, type TestConnectionResult } from './client';
export { WechatHttp, WechatApiError, OFFICIAL_HOSTS, defaultFallbacks, type FailureKind } from './http';
export { TokenManager, type TokenMode } from './token';
export { MediaService, MEDIA_LIMITS, type MediaDownload, type MediaSource, type UploadResult } from './media';
export {
  planSend,
  splitText,
  CUSTOM_MSGTYPES,
  type WechatSendPlan,
  type SendStep,
  type CustomBody,
} from './messages';
export {
  createWechatAttempt,
  classifyError,
  type WechatAttemptOptions,
  type WechatDeliveredDetail,
} from './attempt';
export { WECHAT_ERRORS, TOKEN_ERROR_CODES, describeErrcode, type Lang } from './errors';
