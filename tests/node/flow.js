// The official Node.js SDK against a running cardsms: upload a file, submit a qualification, create a
// signature and a template with the current operations, send a text and a card, read the details back.
// Usage: CARDSMS_ENDPOINT=127.0.0.1:8000 KEY_ID=... KEY_SECRET=... node flow.js  -> one JSON line
'use strict';
const Dysmsapi = require('@alicloud/dysmsapi20170525');
const { $OpenApiUtil } = require('@alicloud/openapi-core');

const Client = Dysmsapi.default;
const client = new Client(new $OpenApiUtil.Config({
  accessKeyId: process.env.KEY_ID, accessKeySecret: process.env.KEY_SECRET,
  endpoint: process.env.CARDSMS_ENDPOINT, protocol: 'http',
}));
const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c63f8cf'
  + 'c0f01f0005000201a2dd1d4a0000000049454e44ae426082', 'hex');

async function upload(name, data) {
  const info = (await client.getOSSInfoForUploadFile(new Dysmsapi.GetOSSInfoForUploadFileRequest({ bizType: 'fcMediaSms' }))).body.model;
  const form = new FormData();
  const key = info.startPath + name;
  for (const [k, v] of Object.entries({ key, policy: info.policy, OSSAccessKeyId: info.accessKeyId, signature: info.signature, success_action_status: '200' })) form.append(k, v);
  form.append('file', new Blob([data]), name);
  const r = await fetch(info.host, { method: 'POST', body: form });
  if (r.status !== 200) throw new Error(`upload ${r.status}: ${await r.text()}`);
  return key;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const out = {};
  const pic = await upload('node-id.png', PNG);
  const qual = (await client.submitSmsQualification(new Dysmsapi.SubmitSmsQualificationRequest({
    qualificationName: 'node资质', companyName: '杭州卡片科技有限公司', companyType: 'COMPANY',
    organizationCode: '91330100799655058B', legalPersonName: '张三', legalPersonIDCardNo: '11010519491231002X',
    legalPersonIDCardType: 'identityCard', legalPersonIdCardEffTime: '2020-01-01~2040-01-01', adminName: '李四',
    adminPhoneNo: '13800138000', adminIDCardNo: '11010519491231002X', adminIDCardType: 'identityCard',
    adminIDCardExpDate: '2020-01-01~2040-01-01', adminIDCardFrontFace: pic, adminIDCardPic: pic,
    bussinessLicenseExpDate: '长期', certifyCode: '123456', useBySelf: true,
    businessLicensePics: [new Dysmsapi.SubmitSmsQualificationRequestBusinessLicensePics({ licensePic: pic, type: 'businessLicense' })],
  }))).body;
  out.qualification = { success: qual.success, id: qual.data };
  const sign = (await client.createSmsSign(new Dysmsapi.CreateSmsSignRequest({
    signName: 'Node签名', signSource: 0, qualificationId: Number(qual.data), remark: 'node sdk',
  }))).body;
  out.sign = { code: sign.code, name: sign.signName };
  out.signStatus = (await client.getSmsSign(new Dysmsapi.GetSmsSignRequest({ signName: 'Node签名' }))).body.signStatus;
  const tpl = (await client.createSmsTemplate(new Dysmsapi.CreateSmsTemplateRequest({
    templateName: 'node通知', templateContent: '订单${order}已发货', templateType: 1, relatedSignName: 'Node签名',
    templateRule: JSON.stringify({ order: 'other_number2' }),
  }))).body;
  out.template = { code: tpl.code, templateCode: tpl.templateCode };
  out.templateStatus = (await client.getSmsTemplate(new Dysmsapi.GetSmsTemplateRequest({ templateCode: tpl.templateCode }))).body.templateStatus;
  const phone = process.env.PHONE;
  const sms = (await client.sendSms(new Dysmsapi.SendSmsRequest({
    phoneNumbers: phone, signName: 'Node签名', templateCode: tpl.templateCode, templateParam: JSON.stringify({ order: 'A-1' }),
  }))).body;
  out.sms = { code: sms.code, bizId: sms.bizId };
  const card = (await client.sendCardSms(new Dysmsapi.SendCardSmsRequest({
    cardTemplateCode: 'PUB_SERVICE_NOTICE', signName: 'Node签名', fallbackType: 'SMS', smsTemplateCode: tpl.templateCode,
    smsTemplateParam: JSON.stringify({ order: 'A-2' }),
    cardObjects: [new Dysmsapi.SendCardSmsRequestCardObjects({ mobile: process.env.CARD_PHONE })],
  }))).body;
  out.card = { code: card.code, success: card.success, bizCardId: card.data && card.data.bizCardId, bizSmsId: card.data && card.data.bizSmsId };
  const today = new Date(Date.now() + 8 * 3600e3).toISOString().slice(0, 10).replace(/-/g, '');
  for (let i = 0; i < 100; i++) {
    const d = (await client.querySendDetails(new Dysmsapi.QuerySendDetailsRequest({
      phoneNumber: phone, sendDate: today, pageSize: 10, currentPage: 1, bizId: sms.bizId,
    }))).body;
    const rows = (d.smsSendDetailDTOs && d.smsSendDetailDTOs.smsSendDetailDTO) || [];
    out.details = rows.map((r) => ({ sendStatus: r.sendStatus, content: r.content }));
    if (rows.length && rows[0].sendStatus === 3) break;
    await sleep(200);
  }
  const cardDetails = (await client.getCardSmsDetails(new Dysmsapi.GetCardSmsDetailsRequest({
    sendDate: today, pageSize: 10, currentPage: 1, phoneNumber: process.env.CARD_PHONE,
  }))).body;
  out.cardDetails = { code: cardDetails.code, records: ((cardDetails.cardSendDetailDTO || {}).records || []).length };
  // full-size requests: the SDK puts every parameter in the query string
  const base = Number(process.env.BIG_BASE);
  const many = Array.from({ length: 1000 }, (_, i) => String(base + i));
  const big = (await client.sendCardSms(new Dysmsapi.SendCardSmsRequest({
    cardTemplateCode: 'PUB_SERVICE_NOTICE', signName: 'Node签名', fallbackType: 'SMS', smsTemplateCode: tpl.templateCode,
    smsTemplateParam: JSON.stringify({ order: 'A-3' }),
    cardObjects: many.map((m, i) => new Dysmsapi.SendCardSmsRequestCardObjects({ mobile: m, customUrl: `https://shop.example.com/o/${i}` })),
  }))).body;
  out.bigCard = { code: big.code, success: big.success,
    numbers: [big.data.mediaMobiles, big.data.notMediaMobiles].filter(Boolean).join(',').split(',').length };
  const own = (await client.createCardSmsTemplate(new Dysmsapi.CreateCardSmsTemplateRequest({
    templateName: 'node通知', memo: 'node sdk', template: {
      cardType: 3, cardSignName: 'Node签名', extendInfo: { scene: 'notice', purpose: '1' },
      templateContent: { pages: [{ tmpCards: [
        { type: 'TEXT', isTextTitle: true, content: '服务通知', positionNumber: 1 },
        { type: 'TEXT', isTextTitle: false, content: '【Node签名】您的服务已开通。', positionNumber: 2 },
        { type: 'BUTTON', content: '查看', actionType: 'OPEN_BROWSER', positionNumber: 3,
          action: { target: 'https://shop.example.com/service', merchantName: 'Shop' } }] }] } },
  }))).body;
  if (!own.success) throw new Error('CreateCardSmsTemplate: ' + JSON.stringify(own));
  const tenThousand = Array.from({ length: 10000 }, (_, i) => String(base + 1000 + i));
  const links = (await client.getCardSmsLink(new Dysmsapi.GetCardSmsLinkRequest({
    cardTemplateCode: own.data.templateCode, phoneNumberJson: JSON.stringify(tenThousand),
    signNameJson: JSON.stringify(['Node签名']), cardCodeType: 2, cardLinkType: 1,
  }))).body;
  if (!links.success) throw new Error('GetCardSmsLink: ' + JSON.stringify(links));
  out.bigLinks = { success: links.success, links: links.data.cardSmsLinks.split(',').length,
    phones: links.data.cardPhoneNumbers.split(',').length };
  const texts = (await client.sendSms(new Dysmsapi.SendSmsRequest({
    phoneNumbers: many.join(','), signName: 'Node签名', templateCode: tpl.templateCode, templateParam: JSON.stringify({ order: 'A-4' }),
  }))).body;
  out.bigSms = { code: texts.code };
  console.log(JSON.stringify(out));
}

main().catch((e) => { console.error(e && e.stack || e); process.exit(1); });
