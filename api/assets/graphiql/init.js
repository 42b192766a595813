// Lockstep's GraphiQL: paste the token the server printed into the Headers tab.
(function () {
  var defaultQuery = [
    '# Welcome to Lockstep. Paste your token into the Headers tab below:',
    '#   {"Authorization": "Bearer <token>"}',
    '',
    '{',
    '  me { subject role }',
    '  accounts(first: 5, orderBy: {field: NAME}) {',
    '    totalCount',
    '    nodes { name domain segment status }',
    '  }',
    '  leads(first: 5) {',
    '    nodes { email stage source account { name } }',
    '  }',
    '}',
    '',
  ].join('\n');
  // Subscriptions go over WebSocket to the same address (graphql-transport-ws);
  // GraphiQL sends the Headers tab as the connection's init payload.
  var ws = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/graphql';
  var base = GraphiQL.createFetcher({ url: '/graphql', subscriptionUrl: ws });
  // Nothing runs until a token is in the Headers tab: no error waits in the
  // result pane when GraphiQL opens. The schema loads with the first
  // request that carries a token (or with the "re-fetch schema" button).
  function hasToken(opts) {
    var h = (opts && opts.headers) || {};
    var auth = String(h.Authorization || h.authorization || '');
    return /^Bearer\s+\S+$/.test(auth) && auth.indexOf('<') < 0;
  }
  var fetcher = function (params, opts) {
    if (hasToken(opts)) {
      return base(params, opts);
    }
    if (params && params.operationName === 'IntrospectionQuery') {
      return new Promise(function () {});
    }
    return Promise.resolve({
      errors: [{ message: 'Paste your token into the Headers tab first: {"Authorization": "Bearer <token>"}' }],
    });
  };
  var root = ReactDOM.createRoot(document.getElementById('graphiql'));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: defaultQuery,
      defaultHeaders: '{\n  "Authorization": "Bearer <paste the token here>"\n}',
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: true,
      defaultEditorToolsVisibility: 'headers',
    })
  );
})();
