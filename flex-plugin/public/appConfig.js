// Local development only (`twilio flex:plugins:start`): the Flex UI configuration the dev
// server loads. A deployed plugin is configured by the Flex account, not by this file.
var appConfig = {
  pluginService: {
    enabled: true,
    url: '/plugins',
  },
  logLevel: 'info',
};
